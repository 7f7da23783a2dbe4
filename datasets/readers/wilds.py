"""`iwildcam`: iWildCam-WILDS v2.0, the fine-tuning target of the papers (182 species, camera traps).

Layout (WILDS' own convention: `--data-root` is WILDS' `root_dir`, holding `iwildcam_v2.0/`;
pointing it at `iwildcam_v2.0/` itself works too):

    <root>/iwildcam_v2.0/metadata.csv      written by pandas with its index column; columns used:
                                           split, y, filename (also location, category_id, ...)
    <root>/iwildcam_v2.0/categories.csv    category names
    <root>/iwildcam_v2.0/train/<filename>  every image, whatever its split

As in WILDS' `IWildCamDataset` (v2.0), `y` is the label and the number of classes is max(y) + 1.
Class names come from categories.csv: by its `y` column when it has one, else through
metadata's (y, category_id) pairs; a label with no name is called `y<label>`. Images are stored
as 448 x 448 squares, the whole frame resized without keeping its aspect ratio, exactly as WILDS'
iWildCam transform (`Resize((448, 448))`) feeds the model; a centre crop of the 16:9 frames would
cut off animals at the edges.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from datasets.readers.image_files import ImageFileSource, Scan, cached_scan, file_sizes, find_dataset_dir
from datasets.sources import WILDS_EVAL_SPLITS, WILDS_SPLITS, SourceError, register_source

IWILDCAM_DOWNLOAD = ("iWildCam-WILDS v2.0 (iwildcam_v2.0.tar.gz, from the WILDS download page or "
                     "`wilds.get_dataset('iwildcam', download=True)` on a machine with internet)")
IWILDCAM_RESOLUTION = 448


def class_names(root: Path, metadata, num_classes: int) -> list[str]:
    import pandas as pd

    names = {}
    path = root / "categories.csv"
    if path.exists():
        cats = pd.read_csv(path)
        if {"y", "name"} <= set(cats.columns):
            names = dict(zip(cats["y"].astype(int), cats["name"].astype(str)))
        elif {"category_id", "name"} <= set(cats.columns) and "category_id" in metadata.columns:
            by_category = dict(zip(cats["category_id"], cats["name"].astype(str)))
            pairs = metadata[["y", "category_id"]].drop_duplicates()
            names = {int(y): by_category[c] for y, c in zip(pairs["y"], pairs["category_id"]) if c in by_category}
    return [names.get(y, f"y{y}") for y in range(num_classes)]


@register_source("iwildcam")
def iwildcam(data_root=None, max_resolution: int | None = None) -> ImageFileSource:
    """iWildCam-WILDS v2.0 with the WILDS splits and evaluation splits."""
    import pandas as pd

    root = find_dataset_dir(data_root, "iwildcam_v2.0", ("metadata.csv", "train"), "iWildCam-WILDS v2.0",
                            IWILDCAM_DOWNLOAD)
    meta_path = root / "metadata.csv"

    def build():
        metadata = pd.read_csv(meta_path, index_col=0)  # written by pandas with its index column
        for column in ("split", "y", "filename"):
            if column not in metadata.columns:
                raise SourceError(f"{meta_path}: no column '{column}' (columns: {', '.join(map(str, metadata.columns))}); "
                                  "use the WILDS v2.0 metadata.csv")
        unknown = sorted(set(metadata["split"]) - set(WILDS_SPLITS))
        if unknown:
            raise SourceError(f"{meta_path}: field 'split' has value '{unknown[0]}'; expected one of {', '.join(WILDS_SPLITS)}")
        y = metadata["y"].to_numpy()
        if not np.issubdtype(y.dtype, np.integer) or y.min() < 0:
            raise SourceError(f"{meta_path}: field 'y' must hold integer labels >= 0; use the WILDS v2.0 metadata.csv")
        num_classes = int(y.max()) + 1
        scans = {}
        for split in WILDS_SPLITS:
            rows = metadata[metadata["split"] == split]
            if rows.empty:
                raise SourceError(f"{meta_path}: no rows with split '{split}'; use the WILDS v2.0 metadata.csv")
            files = [f"train/{f}" for f in rows["filename"].astype(str)]
            scans[split] = Scan(files, rows["y"].to_numpy(dtype=np.int64), file_sizes(root, files, root / "metadata.csv"))
        return {"classes": class_names(root, metadata, num_classes), **scans}

    keys = [meta_path, root / "train"] + ([root / "categories.csv"] if (root / "categories.csv").exists() else [])
    scan = cached_scan("iwildcam", keys, build)
    return ImageFileSource(name="iwildcam", options={"max_resolution": max_resolution or IWILDCAM_RESOLUTION}, square=True,
                           splits=WILDS_SPLITS, classes=scan["classes"], eval_splits=dict(WILDS_EVAL_SPLITS),
                           native_resolution=448, root=root, scans={s: scan[s] for s in WILDS_SPLITS})
