"""ER of pre-trained vs scratch on the in-support and out-of-support parts of a natural shift.

Reads only files: a `<name>.features.npz` written by the engine (`engine.features`: features of
the reference and shifted examples from a fixed encoder, their thumbnails and `meta`), and each
trial's `predictions.npz`. The shifted examples are split by `analysis.support_split`; each part
is scored at every fine-tuning epoch of every trial of `meta["target"]` from the stored
predictions, the scratch trials' (ID, part) points give a trend per part, and the pre-trained
trials' mean ER against it gets a 95% CI that resamples trials. Rows use the columns of
`analysis.support.SUPPORT_COLUMNS`, so the support table and bar chart show them beside the
synthetic shifts.
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
from analysis.groups import is_full, is_scratch
from analysis.predictions import subset_scores
from analysis.support import SUPPORT_COLUMNS
from analysis.support_split import EPSILON, ShiftSplit, split_shift
from analysis.trends import bootstrap_cluster_mean_ci, effective_robustness, fit_trend

NATURAL_DIR = "natural"  # <sweep>/natural/: the files of its natural shifts


def read_bytes(path: str | os.PathLike) -> bytes:
    """A whole file's bytes, a local path or a URI."""
    if remote.is_uri(path):
        from pyarrow import fs as pafs

        filesystem, where = pafs.FileSystem.from_uri(str(path))
        with filesystem.open_input_stream(where) as f:
            return f.read()
    return Path(path).read_bytes()


def read_features(path: str | os.PathLike, keys: tuple[str, ...] | None = None) -> tuple[dict[str, np.ndarray], dict]:
    """(arrays, meta) of a features file, a local path or a URI; only the arrays `keys` when given."""
    with np.load(io.BytesIO(read_bytes(path)) if remote.is_uri(path) else path) as stored:
        arrays = {k: stored[k] for k in stored.files if k != "meta" and (keys is None or k in keys)}
        return arrays, json.loads(str(stored["meta"]))


def find_natural(paths, suffix: str = ".features.npz") -> list[Path | str]:
    """The files `<sweep>/natural/*<suffix>` of sweep directories, local or URIs."""
    found: list[Path | str] = []
    for p in paths:
        if remote.is_uri(p):
            from pyarrow import fs as pafs

            filesystem, root = pafs.FileSystem.from_uri(str(p))
            infos = filesystem.get_file_info(pafs.FileSelector(f"{root.rstrip('/')}/natural", allow_not_found=True))
            found += sorted(remote.join(str(p), "natural", i.base_name) for i in infos
                            if i.base_name.endswith(suffix))
        elif Path(p).is_dir():
            found += sorted(Path(p).glob(f"{NATURAL_DIR}/*{suffix}"))
    return found


def find_features(paths) -> list[Path | str]:
    """The features files of sweep directories, local or URIs (`<sweep>/natural/*.features.npz`)."""
    return find_natural(paths, ".features.npz")


def part_points(rows: pd.DataFrame, trials: pd.DataFrame, split: str, parts: dict[str, np.ndarray],
                metric: str) -> pd.DataFrame:
    """`rows` (finished, one target) with one `<part>_<metric>` column per part, from each trial's predictions."""
    frames = []
    for trial_id, sub in rows.groupby("trial_id"):
        trial_dir = trials.loc[trials["trial_id"] == trial_id, "trial_dir"].iloc[0]
        scored = sub[["trial_id", "epoch", "group", f"id_{metric}"]].copy()
        for name, rows_of_part in parts.items():
            s = subset_scores(trial_dir, split, rows_of_part, name)
            scored = scored.merge(s[["epoch", f"{name}_{metric}"]], on="epoch", how="left")
        frames.append(scored)
    return pd.concat(frames, ignore_index=True)


def natural_split_er(features: str | os.PathLike, rows: pd.DataFrame, trials: pd.DataFrame, metric: str = "f1",
                     transform: str = "probit", n_boot: int = 1000, seed: int = 0,
                     epsilon: float = EPSILON) -> tuple[pd.DataFrame, ShiftSplit, dict]:
    """(rows of ``SUPPORT_COLUMNS`` for the two parts, the split, the features' meta)."""
    arrays, meta = read_features(features)
    split = split_shift(arrays["reference"], arrays["shifted"], epsilon=epsilon, seed=seed)
    target = meta["target"]
    mine = rows[(rows["target"].astype(str) == target) & (rows["status"] == "finished")]
    rows_of = arrays.get("rows", np.arange(len(arrays["shifted"])))  # the shifted examples' rows in their split
    parts = {"in": rows_of[~split.out_of_support], "out": rows_of[split.out_of_support]}
    records = []
    if mine.empty or not all(len(v) for v in parts.values()):
        return pd.DataFrame(columns=SUPPORT_COLUMNS), split, meta
    points = part_points(mine, trials, meta["shifted_split"], parts, metric)
    labels = points["group"].astype(str)
    base_name = next((g for g in labels.unique() if is_scratch(g)), None)
    full_name = next((g for g in labels.unique() if is_full(g)), None)
    if base_name is None or full_name is None:
        return pd.DataFrame(columns=SUPPORT_COLUMNS), split, meta
    base, full = points[labels == base_name], points[labels == full_name]
    x = f"id_{metric}"
    for k, (name, kind) in enumerate((("in", "in-support"), ("out", "out-of-support"))):
        y = f"{name}_{metric}"
        try:
            trend = fit_trend(base[x], base[y], transform)
        except ValueError:  # a part so small that every baseline score is exactly 0 or 1: no trend, so no ER
            return pd.DataFrame(columns=SUPPORT_COLUMNS), split, meta
        er = effective_robustness(trend, full[x], full[y])
        lo, hi = bootstrap_cluster_mean_ci(er, full["trial_id"], n_boot=n_boot, seed=seed + 31 * k)
        records.append({"support": kind, "shift": f"{meta['shift_name']} ({kind} part, "
                        f"{len(parts[name])} images)", "reference": f"natural: {target}", "target": target,
                        "group": full_name, "baseline": base_name,
                        "mean_er": float(np.nanmean(er)) if np.isfinite(er).any() else np.nan,
                        "er_ci_lo": lo, "er_ci_hi": hi, "n_trials": int(full["trial_id"].nunique())})
    return pd.DataFrame.from_records(records, columns=SUPPORT_COLUMNS), split, meta


@dataclass(frozen=True)
class SplitFigure:
    """One split natural shift as the report draws it: the embedded one (`embedded_figure`) or a user's
    own (`analysis.user_split`)."""

    name: str                       # the files' stem: natural_split_<name>
    title: str                      # e.g. "synthcam's natural shift synthcam test"
    table: pd.DataFrame             # SUPPORT_COLUMNS rows of its in-support and out-of-support parts
    split: ShiftSplit
    how: str                        # the caption's first sentence: how the shifted set was split
    thumbnails: np.ndarray | None   # (n_shift, h, w, 3) uint8 in the split's order; None: no image grid
    files: np.ndarray | None = None  # the shifted images' files, when known
    no_grid: str | None = None      # why there is no image grid (one line)

    def frame(self) -> pd.DataFrame:
        """The split, one row per shifted image (`natural_split_<name>.csv`)."""
        files = {} if self.files is None else {"file": self.files}
        return pd.DataFrame({**files, "ratio": self.split.ratio, "probability": self.split.probability,
                             "out_of_support": self.split.out_of_support})


def embedded_figure(path: str | os.PathLike, table: pd.DataFrame, split: ShiftSplit, meta: dict) -> SplitFigure:
    """The figure of a natural shift split here (`natural_split_er`) from its features file."""
    how = (f"The shifted set ({meta['shift_name']}) split by a domain classifier on {meta['encoder']} features "
           f"(10-fold out-of-fold probabilities, temperature {split.temperature:.2f}): an image is out-of-support "
           f"when its density ratio r >= 1/epsilon = {1 / split.epsilon:g} ({int(np.sum(split.out_of_support))} of "
           f"{len(split.ratio)}).")
    thumbnails = read_features(path, ("thumbnails",))[0]["thumbnails"] if not table.empty else None
    return SplitFigure(meta.get("name", meta["target"]), f"{meta['target']}'s natural shift {meta['shift_name']}",
                       table, split, how, thumbnails)


def natural_split_figure(table: pd.DataFrame, split: ShiftSplit, thumbnails: np.ndarray | None, out_path: Path,
                         baseline: str = "scratch", per_side: int = 8) -> Path:
    """In-support and out-of-support ER side by side, and the most in-support (lowest density ratio)
    and most out-of-support (highest) shifted images (none when `thumbnails` is None); PNG and PDF.
    `table`: the in-support row, then the out-of-support one."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    columns = 1 + (per_side if thumbnails is not None else 0)
    fig = Figure(figsize=(7.0 if thumbnails is not None else 2.5, 3.0), dpi=200)
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(2, columns, width_ratios=[per_side * 0.45] + [1] * (columns - 1))
    ax = fig.add_subplot(grid[:, 0])
    m = 100 * table["mean_er"].to_numpy(float)
    lo, hi = 100 * table["er_ci_lo"].to_numpy(float), 100 * table["er_ci_hi"].to_numpy(float)
    ax.bar([0, 1], m, yerr=np.vstack([m - lo, hi - m]), capsize=3, color=["#4c72b0", "#dd8452"])
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks([0, 1])
    ax.set_xticklabels([f"in-support\n({int((~split.out_of_support).sum())})",
                        f"out-of-support\n({int(split.out_of_support.sum())})"], fontsize=6)
    ax.set_ylabel(f"ER vs {baseline} (pp)", fontsize=7)
    # lowest r first and highest r first; equal ratios in the split's order
    rows = (("most in-support", np.argsort(split.ratio, kind="stable")[:per_side]),
            ("most out-of-support", np.argsort(-split.ratio, kind="stable")[:per_side]))
    for row, (title, picks) in enumerate(rows if thumbnails is not None else ()):
        for j, i in enumerate(picks):
            a = fig.add_subplot(grid[row, 1 + j])
            a.imshow(thumbnails[i])
            a.set_xticks([])
            a.set_yticks([])
            a.set_title(f"r={split.ratio[i]:.2g}", fontsize=4, pad=1)
            if j == 0:
                a.set_ylabel(title, fontsize=5)
    fig.tight_layout()
    png = Path(out_path).with_suffix(".png")
    fig.savefig(png)
    fig.savefig(png.with_suffix(".pdf"))
    return png
