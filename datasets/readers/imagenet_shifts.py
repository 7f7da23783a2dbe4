"""ImageNet's natural shifts, evaluation-only sources over ImageNet's 1000 classes (sorted wnids):

    <root>/imagenetv2-matched-frequency-format-val/<0..999>/*.jpeg     (`imagenet_v2`)
    <root>/imagenet-sketch/sketch/<wnid>/*.JPEG   or   <root>/sketch/<wnid>/*.JPEG   (`imagenet_sketch`)

ImageNet-V2's class folders are named by the class *index* 0..999: folder `k` is the k-th wnid of
the sorted ILSVRC-2012 list (`imagenet_wnids()`), mapped by integer, never by the folders' string
order (where `10` sorts before `2`). Each source has one split, `test`, labelled like ImageNet's.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from datasets.readers.image_files import (
    ImageFileSource,
    Scan,
    cached_scan,
    find_dataset_dir,
    list_images,
    list_subfolders,
)
from datasets.sources import SourceError, register_source

V2_VARIANTS = ("matched-frequency", "threshold0.7", "top-images")
V2_DOWNLOAD = ("ImageNet-V2 (imagenetv2-{variant}.tar.gz from huggingface.co/datasets/vaishaal/ImageNetV2), "
               "extracted as imagenetv2-{variant}-format-val/<0..999>/")
SKETCH_DOWNLOAD = "ImageNet-Sketch (github.com/HaohanWang/ImageNet-Sketch), extracted as sketch/<wnid>/"


def _scan(root: Path, folders: list[str], labels: list[int]) -> Scan:
    files, all_labels, sizes = [], [], []
    for folder, label in zip(folders, labels):
        images = list_images(root / folder)
        files += [f"{folder}/{image}" for image in images]
        sizes += [(root / folder / image).stat().st_size for image in images]
        all_labels += [label] * len(images)
    if not files:
        raise SourceError(f"{root}: no images in its class folders")
    return Scan(files, np.asarray(all_labels, dtype=np.int64), np.asarray(sizes, dtype=np.int64))


def _source(name: str, root: Path, scan: dict, max_resolution: int | None) -> ImageFileSource:
    from datasets.hierarchy import imagenet_wnids

    return ImageFileSource(name=name, options={"max_resolution": max_resolution}, splits=("test",),
                           classes=imagenet_wnids(), eval_splits={"test": "test"}, native_resolution=224,
                           holdout_split="test", root=root, scans={"test": scan["test"]})


@register_source("imagenet_v2")
def imagenet_v2(data_root=None, variant: str = "matched-frequency",
                max_resolution: int | None = None) -> ImageFileSource:
    """ImageNet-V2 (Recht et al.): class folder k holds the k-th sorted ImageNet wnid."""
    from datasets.hierarchy import imagenet_wnids

    if variant not in V2_VARIANTS:
        raise SourceError(f"imagenet_v2: unknown variant '{variant}'; variants: {', '.join(V2_VARIANTS)}")
    folder = f"imagenetv2-{variant}-format-val"
    root = find_dataset_dir(data_root, folder, ("0",), f"ImageNet-V2 ({variant})", V2_DOWNLOAD.format(variant=variant))
    wnids = imagenet_wnids()

    def build():
        folders = list_subfolders(root)
        bad = [f for f in folders if not (f.isdigit() and int(f) < len(wnids))]
        if bad:
            raise SourceError(f"{root / bad[0]}: ImageNet-V2 class folders are named 0..{len(wnids) - 1}; "
                              f"remove '{bad[0]}' or re-extract {folder}")
        return {"test": _scan(root, folders, [int(f) for f in folders])}  # by integer, never string order

    return _source(f"imagenet_v2-{variant}", root, cached_scan(f"imagenet_v2-{variant}", [root], build),
                   max_resolution)


@register_source("imagenet_sketch")
def imagenet_sketch(data_root=None, max_resolution: int | None = None) -> ImageFileSource:
    """ImageNet-Sketch (Wang et al.): 50 sketches per ImageNet class, class folders named by wnid."""
    from datasets.hierarchy import imagenet_wnids

    if data_root is not None and (Path(data_root).expanduser() / "imagenet-sketch" / "sketch").is_dir():
        data_root = Path(data_root).expanduser() / "imagenet-sketch"
    root = find_dataset_dir(data_root, "sketch", ("n01440764",), "ImageNet-Sketch", SKETCH_DOWNLOAD)
    index = {w: i for i, w in enumerate(imagenet_wnids())}

    def build():
        folders = list_subfolders(root)
        bad = [f for f in folders if f not in index]
        if bad:
            raise SourceError(f"{root / bad[0]}: not an ImageNet wnid; ImageNet-Sketch's class folders are the "
                              "1000 ILSVRC-2012 wnids")
        return {"test": _scan(root, folders, [index[f] for f in folders])}

    return _source("imagenet_sketch", root, cached_scan("imagenet_sketch", [root], build), max_resolution)
