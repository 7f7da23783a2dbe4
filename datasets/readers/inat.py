"""`inat2017`: iNaturalist 2017 (5,089 species in 13 supercategories; long-tailed).

Layout (`--data-root` holds `inat2017/`, or is that folder):

    <root>/inat2017/train_val_images/<supercategory>/<species>/<id>.jpg
    <root>/inat2017/train2017.json       <root>/inat2017/val2017.json

The json files are COCO-style: `images` (id, file_name relative to the dataset folder),
`annotations` (image_id, category_id), `categories` (id, name, supercategory). Classes are the
species names in category-id order (label = rank of the category id, i.e. the id itself in the
real release, whose ids are 0..5088); `supercategories[c]` is class c's supercategory, for the
granularity and per-class-diversity interventions.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from datasets.readers.image_files import ImageFileSource, Scan, cached_scan, file_sizes, find_dataset_dir
from datasets.sources import SourceError, register_source

INAT_DOWNLOAD = ("the iNaturalist 2017 competition files (train_val_images.tar.gz, train_val2017.zip with "
                 "train2017.json and val2017.json) from github.com/visipedia/inat_comp/tree/master/2017")


def read_coco(path: Path) -> tuple[list[dict], list[str], list[int]]:
    """(categories sorted by id, image file names, category id per image) of a COCO-style json."""
    try:
        data = json.loads(path.read_text())
        categories = sorted(data["categories"], key=lambda c: c["id"])
        category_of = {a["image_id"]: a["category_id"] for a in data["annotations"]}
        images = sorted(data["images"], key=lambda im: im["id"])
        files = [im["file_name"] for im in images]
        targets = [category_of[im["id"]] for im in images]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise SourceError(f"{path}: not a COCO-style iNaturalist json ({type(error).__name__}: {error}); it needs "
                          "'images' (id, file_name), 'annotations' (image_id, category_id) and 'categories' "
                          "(id, name, supercategory); re-download it") from None
    return categories, files, targets


@register_source("inat2017")
def inat2017(data_root=None, max_resolution: int | None = None) -> ImageFileSource:
    """iNaturalist 2017: splits train and val, species classes with their supercategories."""
    root = find_dataset_dir(data_root, "inat2017", ("train_val_images", "train2017.json", "val2017.json"),
                            "iNaturalist 2017", INAT_DOWNLOAD)

    def build():
        categories, train_files, train_targets = read_coco(root / "train2017.json")
        _, val_files, val_targets = read_coco(root / "val2017.json")
        label_of = {c["id"]: i for i, c in enumerate(categories)}
        scans = {}
        for split, files, targets in (("train", train_files, train_targets), ("val", val_files, val_targets)):
            unknown = [t for t in targets if t not in label_of]
            if unknown:
                raise SourceError(f"{root / (split + '2017.json')}: category_id {unknown[0]} of an annotation is not in "
                                  "'categories'; re-download the json")
            labels = np.array([label_of[t] for t in targets], dtype=np.int64)
            scans[split] = Scan(files, labels, file_sizes(root, files, root / f"{split}2017.json"))
        return {"classes": [c["name"] for c in categories],
                "supercategories": [c.get("supercategory", "") for c in categories], **scans}

    keys = [root / "train2017.json", root / "val2017.json", root / "train_val_images"]
    scan = cached_scan("inat2017", keys, build)
    return ImageFileSource(name="inat2017", options={"max_resolution": max_resolution}, splits=("train", "val"),
                           classes=scan["classes"], supercategories=scan["supercategories"],
                           eval_splits={"val": "val"}, native_resolution=224, root=root,
                           scans={"train": scan["train"], "val": scan["val"]})
