"""Per-group trend fits and the per-group summary table (``trends.csv``).

A group's summary: what it is (target, pre-training source, intervention, value), its fitted
slope, intercept, r2 and n (in the fit's transformed space), its mean ID and OOD scores, and the
mean effective robustness of its points against its baseline trend, with a 95% bootstrap CI of
that mean that resamples *trials* (a trial's epochs are not independent points). Scores and ER
are fractions.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import numpy as np
import pandas as pd

from analysis.groups import ordered_groups
from analysis.trends import Trend, bootstrap_cluster_mean_ci, effective_robustness, fit_trend

TREND_COLUMNS = [
    "group", "target", "source", "intervention", "value", "metric", "ood_set", "n", "n_trials", "slope",
    "intercept", "r2", "transform", "mean_id", "mean_ood", "mean_er", "er_ci_lo", "er_ci_hi", "baseline",
    "trend_origin", "few_trials",
]
# Added to the summary when the trials reported them: the pre-training subset's images and classes.
SUBSET_COLUMNS = ("subset_images", "subset_classes")
# Fewer trials than this in a group: its fit and CI rest on too few independent models; flagged.
FEW_TRIALS = 3
_DESCRIBE = ("target", "source", "intervention", "value")


def fit_groups(points: pd.DataFrame, transform: str = "probit", group_col: str = "group",
               x: str = "id_f1", y: str = "ood_f1") -> dict[str, Trend]:
    """A trend per group of ``points`` (``x`` / ``y`` score columns, fractions); groups that cannot fit warn."""
    trends = {}
    for g, sub in points.groupby(group_col, sort=False):
        try:
            trends[str(g)] = fit_trend(sub[x], sub[y], transform)
        except ValueError as exc:
            warnings.warn(f"group {g!r}: no trend fitted ({exc})", stacklevel=2)
    return trends


def summarize_groups(
    points: pd.DataFrame,
    trends: Mapping[str, Trend],
    baselines: Mapping[str, tuple[str, Trend | None]],
    group_col: str = "group",
    baseline_name: str = "scratch",
    extra_trends: Mapping[str, Trend] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    x: str = "id_f1",
    y: str = "ood_f1",
    metric: str = "f1",
    ood_set: str = "ood",
) -> pd.DataFrame:
    """One row per group of ``points``, with ``TREND_COLUMNS`` (+ ``SUBSET_COLUMNS`` if present).

    Args:
        points: rows with ``x``, ``y`` (fractions), ``group_col`` and ``trial_id``.
        trends: group -> fitted trend (``fit_groups``); groups without one get NaN fit columns.
        baselines: group -> (name of its baseline group, that trend or None): with several targets
            each group is measured against its own target's baseline.
        extra_trends: trends given as parameters (``analysis.baselines``); each adds a row with
            ``n = 0``, ``trend_origin = "file"`` and no scores.
        n_boot, seed: the bootstrap of each group's mean ER, resampling its trials.
    Returns:
        ``slope``/``intercept`` in the space of ``transform``; ``mean_er`` with its 95% CI
        ``er_ci_lo``/``er_ci_hi`` (fractions); ``n`` is the number of points in the fit (the
        group's points when it has no fit); ``n_trials`` counts its trials and ``few_trials``
        flags fewer than ``FEW_TRIALS``; ``trend_origin`` is "fit" or "file"; ``source`` is the
        pre-training source; subset columns are the median over the group.
    """
    subset_cols = [c for c in SUBSET_COLUMNS if c in points.columns]
    labels = points[group_col].astype(str)
    records = []
    for i, g in enumerate(ordered_groups(labels.unique(), baseline_name)):
        sub = points[labels == g]
        t = trends.get(g)
        base_name, base = baselines.get(g, (None, None))
        er = effective_robustness(base, sub[x], sub[y]) if base is not None else np.full(len(sub), np.nan)
        clusters = sub["trial_id"] if "trial_id" in sub else np.arange(len(sub))
        lo, hi = bootstrap_cluster_mean_ci(er, clusters, n_boot=n_boot, seed=seed + i)
        n_trials = int(sub["trial_id"].nunique()) if "trial_id" in sub else len(sub)
        first = sub.iloc[0]
        rec = {
            "group": g,
            **{k: first.get(k) for k in _DESCRIBE},
            "metric": metric, "ood_set": ood_set,
            "n": t.n if t else len(sub),
            "n_trials": n_trials,
            "slope": t.slope if t else np.nan,
            "intercept": t.intercept if t else np.nan,
            "r2": t.r2 if t else np.nan,
            "transform": t.transform if t else None,
            "mean_id": sub[x].mean(),
            "mean_ood": sub[y].mean(),
            "mean_er": float(np.nanmean(er)) if np.isfinite(er).any() else np.nan,
            "er_ci_lo": lo,
            "er_ci_hi": hi,
            "baseline": base_name,
            "trend_origin": "fit",
            "few_trials": n_trials < FEW_TRIALS,
        }
        for col in subset_cols:  # scratch models have no pre-training subset: "–", never 0
            rec[col] = np.nan if first.get("intervention") == "scratch" else pd.to_numeric(
                sub[col], errors="coerce").median()
        records.append(rec)
    for name, t in (extra_trends or {}).items():
        rec = dict.fromkeys([*TREND_COLUMNS, *subset_cols], np.nan)
        rec.update(group=name, n=0, slope=t.slope, intercept=t.intercept, transform=t.transform, metric=metric,
                   ood_set=ood_set, n_trials=0, trend_origin="file", few_trials=False)
        records.append(rec)
    return pd.DataFrame.from_records(records, columns=[*TREND_COLUMNS, *subset_cols])
