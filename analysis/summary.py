"""Per-group trend fits and the per-group summary table (``trends.csv``).

A group's summary: its fitted slope, intercept, r2 and n (in the fit's transformed space), its
mean ID and OOD scores, and the mean effective robustness of its points against a chosen
baseline trend, with a 95% bootstrap CI of that mean. Scores and ER are fractions.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import numpy as np
import pandas as pd

from analysis.groups import ordered_groups
from analysis.trends import Trend, bootstrap_mean_ci, effective_robustness, fit_trend

TREND_COLUMNS = [
    "group", "n", "slope", "intercept", "r2", "transform", "mean_id_f1", "mean_ood_f1", "mean_er",
    "er_ci_lo", "er_ci_hi", "n_trials", "source",
]
# Added to the summary when the trials reported them (experiments from before they existed
# lack them): the pre-training subset's images and classes, 0 for scratch.
SUBSET_COLUMNS = ("subset_images", "subset_classes")


def fit_groups(
    points: pd.DataFrame, transform: str = "probit", group_col: str = "group"
) -> dict[str, Trend]:
    """A trend per group of ``points`` (id_f1/ood_f1 fractions); groups that cannot fit warn."""
    trends = {}
    for g, sub in points.groupby(group_col, sort=False):
        try:
            trends[str(g)] = fit_trend(sub["id_f1"], sub["ood_f1"], transform)
        except ValueError as exc:
            warnings.warn(f"group {g!r}: no trend fitted ({exc})", stacklevel=2)
    return trends


def summarize_groups(
    points: pd.DataFrame,
    trends: Mapping[str, Trend],
    baseline: Trend | None,
    group_col: str = "group",
    baseline_name: str = "scratch",
    extra_trends: Mapping[str, Trend] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per group of ``points``, with ``TREND_COLUMNS`` (+ ``SUBSET_COLUMNS`` if present).

    Args:
        points: rows with ``id_f1``, ``ood_f1`` (fractions), ``group_col`` and ``trial_id``.
        trends: group -> fitted trend (``fit_groups``); groups without one get NaN fit columns.
        baseline: the trend ER is measured against; None gives NaN ER columns.
        extra_trends: trends given as parameters (``analysis.baselines``); each adds a row with
            ``n = 0``, ``source = "file"`` and no scores.
        n_boot, seed: the bootstrap of each group's mean ER (resampling its points).
    Returns:
        ``slope``/``intercept`` in the space of ``transform``; ``mean_er`` with its 95% CI ``er_ci_lo``/``er_ci_hi`` (fractions); ``n`` is the number
        of points in the fit (the group's points when it has no fit); ``n_trials`` counts its
        trials; ``source`` is "fit" or "file"; subset columns are the median over the group.
    """
    subset_cols = [c for c in SUBSET_COLUMNS if c in points.columns]
    labels = points[group_col].astype(str)
    records = []
    for i, g in enumerate(ordered_groups(labels.unique(), baseline_name)):
        sub = points[labels == g]
        t = trends.get(g)
        er = (
            effective_robustness(baseline, sub["id_f1"], sub["ood_f1"])
            if baseline is not None
            else np.full(len(sub), np.nan)
        )
        lo, hi = bootstrap_mean_ci(er, n_boot=n_boot, seed=seed + i)
        rec = {
            "group": g,
            "n": t.n if t else len(sub),
            "slope": t.slope if t else np.nan,
            "intercept": t.intercept if t else np.nan,
            "r2": t.r2 if t else np.nan,
            "transform": t.transform if t else None,
            "mean_id_f1": sub["id_f1"].mean(),
            "mean_ood_f1": sub["ood_f1"].mean(),
            "mean_er": float(np.nanmean(er)) if np.isfinite(er).any() else np.nan,
            "er_ci_lo": lo,
            "er_ci_hi": hi,
            "n_trials": sub["trial_id"].nunique() if "trial_id" in sub else np.nan,
            "source": "fit",
        }
        for col in subset_cols:
            rec[col] = pd.to_numeric(sub[col], errors="coerce").median()
        records.append(rec)
    for name, t in (extra_trends or {}).items():
        rec = dict.fromkeys([*TREND_COLUMNS, *subset_cols], np.nan)
        rec.update(group=name, n=0, slope=t.slope, intercept=t.intercept, transform=t.transform)
        rec.update(n_trials=0, source="file")
        records.append(rec)
    return pd.DataFrame.from_records(records, columns=[*TREND_COLUMNS, *subset_cols])
