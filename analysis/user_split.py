"""A user's own split shift (a `shift_folders` target) in the report: its parts' image counts and the
figure the embedded natural split gets (both parts' ER side by side, the most in- and out-of-support
images).

The shift was split once, by `support_shift.py split`; its trials score both parts as OOD sets
(`ood_in_support_*`, `ood_out_of_support_*`), so `analysis.support` already has their ER. Reads only
the sweep directory (local or a URI), where the sweep's `before_report` step (`engine.split_files`)
copied what the figure needs:

    natural/<target>.split.csv         the split file the cells were evaluated on: `file`, density ratio
                                       `ratio`, `probability`, `out_of_support`; the ratios rank the grid
    natural/<target>.thumbnails.npz    `thumbnails` and `files` of the shifted images, in the split's order
                                       (missing when the features file was not beside the split file)
"""
from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import remote
from analysis.natural_split import SplitFigure, find_natural, read_bytes
from analysis.support import SPLIT_PARTS, target_options_of
from analysis.support_split import ShiftSplit

SPLIT_SUFFIX, THUMBNAILS_SUFFIX = ".split.csv", ".thumbnails.npz"


@dataclass(frozen=True)
class UserSplit:
    """A user's split as the sweep copied it."""

    target: str
    options: dict                    # the target's options: `shifted`, `split` (the user's split file)
    files: np.ndarray                # the shifted images, relative to the shifted folder
    split: ShiftSplit                # ratio and marks from the split file (its temperature and epsilon unknown: NaN)
    thumbnails: np.ndarray | None    # in the split's order
    encoder: str | None

    def sizes(self) -> dict[tuple[str, str], int]:
        """The images of each part, keyed as `analysis.support.support_table` takes them."""
        out = self.split.out_of_support
        return {(self.target, "in_support"): int((~out).sum()), (self.target, "out_of_support"): int(out.sum())}


def _sibling(path: Path | str, name: str) -> Path | str:
    return remote.join(str(path).rsplit("/", 1)[0], name) if remote.is_uri(path) else Path(path).with_name(name)


def _read_split(path: Path | str) -> tuple[np.ndarray, ShiftSplit]:
    table = pd.read_csv(io.BytesIO(read_bytes(path)), dtype={"file": str})
    marks = table["out_of_support"].astype(str).str.strip().str.lower().map({"true": True, "false": False})
    if marks.isna().any() or not {"ratio", "probability"} <= set(table.columns):
        raise ValueError(f"{path}: not a split file (columns file, ratio, probability, out_of_support)")
    nan = float("nan")
    return table["file"].to_numpy(), ShiftSplit(out_of_support=marks.to_numpy(bool),
                                                ratio=table["ratio"].to_numpy(float),
                                                probability=table["probability"].to_numpy(float),
                                                temperature=nan, epsilon=nan)


def _read_thumbnails(path: Path | str, files: np.ndarray) -> tuple[np.ndarray | None, str | None]:
    """(thumbnails in the split's order or None, encoder)."""
    try:
        data = read_bytes(path)
    except FileNotFoundError:
        return None, None
    with np.load(io.BytesIO(data)) as stored:
        if stored["files"].tolist() != files.tolist():  # copied with another split: never a mismatched grid
            return None, None
        return stored["thumbnails"], json.loads(str(stored["meta"])).get("encoder")


def read_user_splits(paths, points: pd.DataFrame) -> tuple[dict[str, UserSplit], list[str]]:
    """({target: its split} of the user's split shifts among `points`' targets found in the sweep
    directories `paths`, one-line notes of those that are not)."""
    options = {}
    if "target_options" in points.columns and "target" in points.columns:
        options = {str(t): o for t, o in points.groupby("target")["target_options"].first()
                   .map(target_options_of).items() if "split" in o}
    found = {os.path.basename(str(p)).removesuffix(SPLIT_SUFFIX): p for p in find_natural(paths, SPLIT_SUFFIX)}
    splits, notes = {}, []
    for target, opts in sorted(options.items()):
        if target not in found:
            notes.append(f"The split shift {target} has no split figure and no image counts: natural/{target}"
                         f"{SPLIT_SUFFIX} is not in the sweep (the sweep copies its split file {opts['split']} "
                         "there when it runs: run it again).")
            continue
        files, split = _read_split(found[target])
        thumbnails, encoder = _read_thumbnails(_sibling(found[target], f"{target}{THUMBNAILS_SUFFIX}"), files)
        splits[target] = UserSplit(target, opts, files, split, thumbnails, encoder)
    return splits, notes


def user_figure(mine: UserSplit, support: pd.DataFrame) -> SplitFigure:
    """The figure of a user's split shift, with its parts' rows of the support table."""
    rows = support[(support["target"].astype(str) == mine.target) & support["support"].isin(SPLIT_PARTS.values())
                   & (support["reference"] == f"natural: {mine.target}")]
    table = rows.set_index("support").reindex(list(SPLIT_PARTS.values())).reset_index().dropna(subset=["mean_er"])
    shifted = Path(str(mine.options.get("shifted", mine.target))).name
    n_out = int(mine.split.out_of_support.sum())
    by = f" on {mine.encoder} features" if mine.encoder else ""
    how = (f"The shifted folder ({shifted}) as its split file {mine.options['split']} marks it (support_shift.py "
           f"split: a domain classifier{by}, an image out-of-support when its density ratio r >= 1/epsilon; "
           f"{n_out} of {len(mine.split.ratio)}).")
    no_grid = None if mine.thumbnails is not None else (
        f"The split shift {mine.target} has no image grid: the features file that support_shift.py split writes "
        f"beside {mine.options['split']} was missing (or of another split) when the sweep ran.")
    return SplitFigure(mine.target, f"{mine.target}'s shift {shifted}", table if len(table) == 2 else table.iloc[:0],
                       mine.split, how, mine.thumbnails, files=mine.files, no_grid=no_grid)
