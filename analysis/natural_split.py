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
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import remote
from analysis.groups import is_full, is_scratch
from analysis.predictions import subset_scores
from analysis.support import SUPPORT_COLUMNS
from analysis.support_split import EPSILON, ShiftSplit, split_shift
from analysis.trends import bootstrap_cluster_mean_ci, effective_robustness, fit_trend

FEATURES_GLOB = "natural/*.features.npz"


def read_features(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict]:
    """(arrays, meta) of a features file, a local path or a URI."""
    if remote.is_uri(path):
        from pyarrow import fs as pafs

        filesystem, where = pafs.FileSystem.from_uri(str(path))
        with filesystem.open_input_stream(where) as f:
            source = io.BytesIO(f.read())
    else:
        source = path
    with np.load(source) as stored:
        arrays = {k: stored[k] for k in stored.files if k != "meta"}
        return arrays, json.loads(str(stored["meta"]))


def find_features(paths) -> list[Path | str]:
    """The features files of sweep directories, local or URIs (`<sweep>/natural/*.features.npz`)."""
    found: list[Path | str] = []
    for p in paths:
        if remote.is_uri(p):
            from pyarrow import fs as pafs

            filesystem, root = pafs.FileSystem.from_uri(str(p))
            infos = filesystem.get_file_info(pafs.FileSelector(f"{root.rstrip('/')}/natural", allow_not_found=True))
            found += sorted(remote.join(str(p), "natural", i.base_name) for i in infos
                            if i.base_name.endswith(".features.npz"))
        elif Path(p).is_dir():
            found += sorted(Path(p).glob(FEATURES_GLOB))
    return found


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


def natural_split_figure(table: pd.DataFrame, split: ShiftSplit, thumbnails: np.ndarray, out_path: Path,
                         baseline: str = "scratch", per_side: int = 8) -> Path:
    """In-support and out-of-support ER side by side, and the most in-support (lowest density ratio)
    and most out-of-support (highest) shifted images; PNG and PDF."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.0, 3.0), dpi=200)
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(2, 1 + per_side, width_ratios=[per_side * 0.45] + [1] * per_side)
    ax = fig.add_subplot(grid[:, 0])
    m = 100 * table["mean_er"].to_numpy(float)
    lo, hi = 100 * table["er_ci_lo"].to_numpy(float), 100 * table["er_ci_hi"].to_numpy(float)
    ax.bar([0, 1], m, yerr=np.vstack([m - lo, hi - m]), capsize=3, color=["#4c72b0", "#dd8452"])
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks([0, 1])
    ax.set_xticklabels([f"in-support\n({int((~split.out_of_support).sum())})",
                        f"out-of-support\n({int(split.out_of_support.sum())})"], fontsize=6)
    ax.set_ylabel(f"ER vs {baseline} (pp)", fontsize=7)
    order = np.argsort(split.ratio)
    for row, (title, picks) in enumerate((("most in-support", order[:per_side]),
                                          ("most out-of-support", order[::-1][:per_side]))):
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
