"""`shift_folders`: a user's own shift as a fine-tuning target, from two folders of images and the
split that `python sweeps/support_shift.py split` wrote for them (`<prefix>.split.csv`).

    <reference>/<class>/*   the reference distribution: a seeded `test_fraction` of each class (at least
                            one image of a class with two) is held out as `id_test`, the rest is `train`
    <shifted>/<class>/*     the shifted images; its class folders are named as the reference's (some or all)
    <split>                 one row per shifted image: `file` (relative to <shifted>), `out_of_support`

Splits `train`, `id_test` (ID) and `test` (OOD: the whole shifted folder). `domains("test")` tags each
shifted image `in_support` or `out_of_support` as the split file says, so a trial scores each part as
its own OOD set (`ood_in_support_*`, `ood_out_of_support_*`, the way DomainNet's domains are scored)
beside the pooled `ood_*`, and the report's support table names the two parts (`analysis.support`).
The split file must list exactly the shifted folder's images: a stale split (images added, removed or
renamed since) is refused, never half-used.
"""
from __future__ import annotations

import csv
import hashlib
import os
from pathlib import Path

import numpy as np

from datasets.readers.image_files import ImageFileSource, Scan, cached_scan, list_subfolders
from datasets.readers.imagenet import held_out, scan_class_folders
from datasets.sources import SourceError, register_source

# the names of the two parts as OOD sets (metric prefixes `ood_<part>_`); `analysis.support.SPLIT_PARTS` reads them
PARTS = {False: "in_support", True: "out_of_support"}
SPLIT_COMMAND = "python sweeps/support_shift.py split --reference DIR --shifted DIR --encoder ARCH --weights PATH"


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes (a split file's identity in a cell's config)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _folder(text: str | None, what: str) -> Path:
    if not text:
        raise SourceError(f"shift_folders: give {what}")
    path = Path(text).expanduser().resolve()
    if not path.is_dir():
        raise SourceError(f"shift_folders: {what} {text}: no such directory")
    return path


def _truth(value: str, path: Path, line: int) -> bool:
    known = {"true": True, "1": True, "false": False, "0": False}
    if value.strip().lower() not in known:
        raise SourceError(f"{path}, line {line}: out_of_support is {value!r}, not True or False; write the split "
                          f"again with: {SPLIT_COMMAND}")
    return known[value.strip().lower()]


def read_split(path: Path) -> dict[str, bool]:
    """{file relative to the shifted folder: out of support?} of a split file."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = {"file", "out_of_support"} - set(reader.fieldnames or ())
        if missing:
            raise SourceError(f"{path}: no column '{sorted(missing)[0]}'; a split file has file, ratio, probability "
                              f"and out_of_support columns, as written by: {SPLIT_COMMAND}")
        split: dict[str, bool] = {}
        for line, row in enumerate(reader, start=2):
            if row["file"] in split:
                raise SourceError(f"{path}, line {line}: {row['file']} is listed twice")
            split[row["file"]] = _truth(row["out_of_support"], path, line)
    if not split:
        raise SourceError(f"{path}: lists no image")
    return split


def _scan(folder: Path, root: Path, classes: list[str] | None) -> tuple[list[str], Scan]:
    """`folder/<class>/<image>` with paths relative to `root` (a parent of `folder`)."""
    classes, scan = scan_class_folders(folder, classes)
    prefix = folder.relative_to(root).as_posix()
    scan.files = [f"{prefix}/{f.split('/', 1)[1]}" if prefix != "." else f.split("/", 1)[1] for f in scan.files]
    return classes, scan


def _part_tags(split: dict[str, bool], files: list[str], prefix: str, split_path: Path, shifted: Path) -> np.ndarray:
    """The part (`PARTS`) of each shifted image, in scan order; a split that does not list exactly them is refused."""
    relative = [f[len(prefix) + 1:] if prefix != "." else f for f in files]
    unlisted = [f for f in relative if f not in split]
    extra = sorted(set(split) - set(relative))
    if unlisted or extra:
        what = (f"does not list {len(unlisted)} image(s) of {shifted} (e.g. {unlisted[0]})" if unlisted
                else f"lists {len(extra)} file(s) that are not images in the class folders of {shifted} (e.g. {extra[0]})")
        raise SourceError(f"--split {split_path} {what}: it was written for other images; split these folders "
                          f"again with: {SPLIT_COMMAND}")
    return np.array([PARTS[split[f]] for f in relative], dtype=object)


@register_source("shift_folders")
def shift_folders(data_root=None, reference: str | None = None, shifted: str | None = None, split: str | None = None,
                  split_sha256: str | None = None, test_fraction: float = 0.2, seed: int = 0,
                  max_resolution: int | None = None) -> ImageFileSource:
    """A reference folder (fine-tuning train and ID test) and a shifted folder split into its in-support and
    out-of-support parts by `split` (whose SHA-256 must be `split_sha256` when given: the cell's record of it)."""
    reference_dir, shifted_dir = _folder(reference, "--reference"), _folder(shifted, "--shifted")
    if reference_dir == shifted_dir:
        raise SourceError(f"shift_folders: --reference and --shifted are the same folder, {reference_dir}")
    if not split:
        raise SourceError(f"shift_folders: give --split, the .split.csv written by: {SPLIT_COMMAND}")
    split_path = Path(split).expanduser().resolve()
    if not split_path.is_file():
        raise SourceError(f"--split {split}: no such file; write it with: {SPLIT_COMMAND}")
    if split_sha256 is not None and file_sha256(split_path) != split_sha256:
        raise SourceError(f"--split {split_path} changed since this sweep's cells were defined; run the sweep again "
                          "to evaluate on the new split")
    if not 0 < test_fraction < 1:
        raise SourceError(f"shift_folders: test_fraction={test_fraction!r} is not a fraction in (0, 1)")
    ref_classes = list_subfolders(reference_dir)
    if len(ref_classes) < 2:
        raise SourceError(f"--reference {reference_dir}: {len(ref_classes)} class folder(s); the reference needs one "
                          "sub-folder of images per class, at least two")
    unknown = sorted(set(list_subfolders(shifted_dir)) - set(ref_classes))
    if unknown:
        more = f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""
        raise SourceError(f"--shifted {shifted_dir}: class folder '{unknown[0]}'{more} is not a class of --reference "
                          f"{reference_dir}; remove it from the shifted folder or add it to the reference")
    root = Path(os.path.commonpath([reference_dir, shifted_dir]))  # scans' paths are relative to one root

    def build():
        classes, ref = _scan(reference_dir, root, ref_classes)
        return {"classes": classes, "reference": ref, "shifted": _scan(shifted_dir, root, classes)[1]}

    keys = [d / c for d in (reference_dir, shifted_dir) for c in ["", *list_subfolders(d)]]
    scan = cached_scan("shift_folders", keys, build)
    train, id_test = held_out(scan["reference"], test_fraction, seed)
    shift_scan = scan["shifted"]
    tags = _part_tags(read_split(split_path), shift_scan.files, shifted_dir.relative_to(root).as_posix(), split_path,
                      shifted_dir)
    test = Scan(shift_scan.files, shift_scan.labels, shift_scan.sizes, domains=tags)
    options = {"reference": str(reference_dir), "shifted": str(shifted_dir), "split": str(split_path),
               "split_sha256": split_sha256, "test_fraction": test_fraction, "seed": seed,
               "max_resolution": max_resolution}
    return ImageFileSource(name="shift_folders", options=options, splits=("train", "id_test", "test"),
                           classes=scan["classes"], eval_splits={"id": "id_test", "ood": "test"},
                           native_resolution=224, holdout_split="id_test", root=root,
                           scans={"train": train, "id_test": id_test, "test": test},
                           every_class_in=("train", "id_test"))

