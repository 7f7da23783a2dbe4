"""Class-folder sources: `imagenet` (ILSVRC-2012) and `folder` (one sub-folder of images per class).

Layouts (`--data-root` is the folder holding the datasets; pointing it at the dataset folder
itself works too):

    <root>/imagenet/train/<wnid>/*.JPEG        <root>/imagenet/val/<wnid>/*.JPEG
        (the validation images re-organised into class folders, as PyTorch's ImageNet example
        expects; e.g. with the `valprep.sh` script that recipe points to)

    <root>/<path>/train/<class>/*  [+ <root>/<path>/val/<class>/*]      or      <root>/<path>/<class>/*
        (`folder`, e.g. path="stable_diffusion" or a downloaded FractalDB-1k; without a val/
        folder, a seeded `val_fraction` of each class is held out as val)

Class ids are the folder names, sorted: wnids for ImageNet and for folders named by wnid, so the
WordNet interventions apply to both.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from datasets.readers.image_files import ImageFileSource, Scan, cached_scan, find_dataset_dir, list_images, list_subfolders
from datasets.sources import SourceError, register_source

IMAGENET_DOWNLOAD = ("ILSVRC2012 train and val from image-net.org (ILSVRC2012_img_train.tar, ILSVRC2012_img_val.tar), "
                     "train extracted to train/<wnid>/ and val re-organised into val/<wnid>/")


def scan_class_folders(split_dir: Path, classes: list[str] | None = None) -> tuple[list[str], Scan]:
    """(classes, scan) of `split_dir/<class>/<image>`; `classes` fixes the label order (val uses train's)."""
    found = list_subfolders(split_dir)
    if not found:
        raise SourceError(f"{split_dir}: no class folders; expected one sub-folder of images per class")
    classes = found if classes is None else classes
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise SourceError(f"{split_dir}: class folder '{unknown[0]}' (and {len(unknown) - 1} more) is not a class of "
                          f"the train split; remove it or add it to train/")
    index = {c: i for i, c in enumerate(classes)}
    files, labels, sizes = [], [], []
    for name in found:
        folder = split_dir / name
        images = list_images(folder)
        if not images:
            raise SourceError(f"{folder}: empty class folder (no .jpg/.jpeg/.png images); remove it or add its images")
        for image in images:
            files.append(f"{split_dir.name}/{name}/{image}")
            sizes.append((folder / image).stat().st_size)
        labels += [index[name]] * len(images)
    return classes, Scan(files, np.asarray(labels, dtype=np.int64), np.asarray(sizes, dtype=np.int64))


def _key_paths(root: Path, splits: list[str]) -> list[Path]:
    """The split folders and every class folder: their mtimes change when an image is added or removed."""
    paths = []
    for split in splits:
        paths.append(root / split)
        paths += [root / split / c for c in list_subfolders(root / split)]
    return paths


@register_source("imagenet")
def imagenet(data_root=None, max_resolution: int | None = None) -> ImageFileSource:
    """ILSVRC-2012: classes are the wnids of train/; splits train and val."""
    root = find_dataset_dir(data_root, "imagenet", ("train", "val"), "ImageNet", IMAGENET_DOWNLOAD)

    def build():
        classes, train = scan_class_folders(root / "train")
        _, val = scan_class_folders(root / "val", classes)
        return {"classes": classes, "train": train, "val": val}

    scan = cached_scan("imagenet", _key_paths(root, ["train", "val"]), build)
    return ImageFileSource(name="imagenet", options={"max_resolution": max_resolution}, splits=("train", "val"),
                           classes=scan["classes"], eval_splits={"val": "val"}, native_resolution=224,
                           root=root, scans={"train": scan["train"], "val": scan["val"]},
                           every_class_in=("train", "val"))


STABLE_DIFFUSION_DOWNLOAD = ("Stable Diffusion generations of the 1000 ImageNet classes (the paper prompts each class "
                             "with 80 templates), one sub-folder per wnid")
FRACTALDB_DOWNLOAD = "FractalDB-1k (1000 classes x 1000 images) from the FractalDB project page (Kataoka et al.)"


def _named_folder(data_root, path: str, name: str, what: str, download: str, **options) -> ImageFileSource:
    base = None if data_root is None else Path(data_root).expanduser() / path
    if base is None or not base.is_dir():
        where = f"{base}/" if base else f"<data-root>/{path}/"
        raise SourceError(f"{what} not found: put {download} in {where}<class>/ (or {where}train/<class>/ and "
                          f"{where}val/<class>/), then pass --data-root")
    return folder(data_root, path=path, name=name, **options)


@register_source("stable_diffusion")
def stable_diffusion(data_root=None, path: str = "stable_diffusion", val_fraction: float = 0.1, seed: int = 0,
                     max_resolution: int | None = None) -> ImageFileSource:
    """Stable Diffusion images of the ImageNet classes: a `folder` of wnid class folders under `<data_root>/<path>`."""
    return _named_folder(data_root, path, "stable_diffusion", "Stable Diffusion images", STABLE_DIFFUSION_DOWNLOAD,
                         val_fraction=val_fraction, seed=seed, max_resolution=max_resolution)


@register_source("fractaldb1k")
def fractaldb1k(data_root=None, path: str = "FractalDB-1k", val_fraction: float = 0.1, seed: int = 0,
                max_resolution: int | None = None) -> ImageFileSource:
    """The released FractalDB-1k, a `folder` of class folders under `<data_root>/<path>` (`fractaldb` generates it instead)."""
    return _named_folder(data_root, path, "fractaldb1k", "FractalDB-1k", FRACTALDB_DOWNLOAD,
                         val_fraction=val_fraction, seed=seed, max_resolution=max_resolution)


def held_out(scan: Scan, fraction: float, seed: int) -> tuple[Scan, Scan]:
    """(train, val): per class, a seeded `fraction` of its images (at least one, when it has two) is val."""
    rng = np.random.default_rng(seed)
    val_rows = []
    for c in np.unique(scan.labels):
        rows = np.flatnonzero(scan.labels == c)
        k = min(len(rows) - 1, max(1, math.ceil(fraction * len(rows)))) if fraction > 0 else 0
        val_rows += rng.permutation(rows)[:k].tolist()
    is_val = np.zeros(len(scan.files), dtype=bool)
    is_val[val_rows] = True

    def pick(mask):
        return Scan([f for f, m in zip(scan.files, mask) if m], scan.labels[mask], scan.sizes[mask])

    return pick(~is_val), pick(is_val)


@register_source("folder")
def folder(data_root=None, path: str | None = None, val_fraction: float = 0.1, seed: int = 0,
           max_resolution: int | None = None, name: str = "folder") -> ImageFileSource:
    """A folder of class sub-folders: `<data_root>/<path>` (or `path` if absolute, or `data_root` itself)."""
    if data_root is None and (path is None or not Path(path).is_absolute()):
        raise SourceError("folder: give --data-root and the option path=<sub-folder> (one sub-folder of images per "
                          "class, or train/ and val/ holding those)")
    base = Path(data_root or "/").expanduser() / (path or "")
    if not base.is_dir():
        raise SourceError(f"folder: {base} does not exist; put the images in {base}/<class>/ or {base}/train/<class>/ "
                          "(option path= names the sub-folder of --data-root)")
    has_train = (base / "train").is_dir()
    splits = ["train"] + (["val"] if (base / "val").is_dir() else []) if has_train else []
    options = {"path": path, "val_fraction": val_fraction, "seed": seed, "max_resolution": max_resolution}

    def build():
        if not has_train:  # class folders directly in base: val is held out below
            classes, everything = scan_class_folders(base)
            everything.files = [f.split("/", 1)[1] for f in everything.files]  # relative to base: <class>/<image>
            return {"classes": classes, "train": everything, "val": None}
        classes, train = scan_class_folders(base / "train")
        val = scan_class_folders(base / "val", classes)[1] if "val" in splits else None
        return {"classes": classes, "train": train, "val": val}

    keys = _key_paths(base, splits) if has_train else [base] + [base / c for c in list_subfolders(base)]
    scan = cached_scan(f"folder-{name}", keys, build)
    if scan["val"] is None:
        train, val = held_out(scan["train"], val_fraction, seed)
    else:
        train, val = scan["train"], scan["val"]
    if len(val.files) == 0:
        raise SourceError(f"folder {base}: no val images; add a val/ folder or give each class at least two images "
                          f"and val_fraction > 0")
    return ImageFileSource(name=name, options=options, splits=("train", "val"), classes=scan["classes"],
                           eval_splits={"val": "val"}, native_resolution=224, root=base,
                           scans={"train": train, "val": val}, every_class_in=("train", "val"))
