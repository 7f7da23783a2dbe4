"""Residuals over fine-tuning epochs against a baseline trend (the papers' Fig. 3 check).

The papers fit the ImageNet-pre-trained trend and plot each architecture's residual (actual OOD
minus predicted) against fine-tuning epoch; residuals near 0 at every epoch justify using every
epoch as a point. Default trend here: the ``full`` group's (the ImageNet-pre-trained models) when
there is one, else the report's baseline; the points are that group's own, or every point when
the trend has no points of its own (a trend from a baseline file). Residuals are fractions.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from analysis.trends import Trend, effective_robustness

RESIDUAL_COLUMNS = ["arch", "epoch", "mean", "std", "min", "max", "n"]


def residual_baseline(trends: Mapping[str, Trend], baseline: str) -> str | None:
    """The group whose trend the residual check uses: "full" if fitted, else ``baseline``."""
    if "full" in trends:
        return "full"
    return baseline if baseline in trends else None


def residual_points(
    points: pd.DataFrame, group: str, group_col: str = "group"
) -> pd.DataFrame:
    """The points whose residuals are shown: ``group``'s own, or all points if it has none."""
    own = points[points[group_col].astype(str) == group]
    return own if len(own) else points


def epoch_residuals(points: pd.DataFrame, trend: Trend, by: str = "arch") -> pd.DataFrame:
    """Residual (OOD minus ``trend``'s prediction, fractions) per (``by``, epoch).

    Args:
        points: rows with ``id_f1``, ``ood_f1`` (fractions), ``epoch`` and ``by``.
        trend: the baseline trend.
        by: the column of the lines (default architecture); seeds and groups are pooled.
    Returns:
        One row per (``by``, epoch) with columns ``RESIDUAL_COLUMNS`` (``arch`` holds the value
        of ``by``): mean, std (0 for one point), min, max and count of the residuals; points
        whose residual is not finite (a score of 0 or 1 under probit/logit) are left out.
    """
    for col in ("id_f1", "ood_f1", "epoch", by):
        if col not in points.columns:
            raise ValueError(f"residuals need a column {col!r}; the points have none")
    res = effective_robustness(trend, points["id_f1"], points["ood_f1"])
    df = pd.DataFrame(
        {"arch": points[by].astype(str).to_numpy(), "epoch": points["epoch"].to_numpy(), "r": res}
    )
    df = df[np.isfinite(df["r"]) & df["epoch"].notna()]
    if df.empty:
        return pd.DataFrame(columns=RESIDUAL_COLUMNS)
    out = (
        df.groupby(["arch", "epoch"], sort=True)["r"]
        .agg(["mean", "std", "min", "max", "count"])
        .reset_index()
        .rename(columns={"count": "n"})
    )
    out["std"] = out["std"].fillna(0.0)
    return out[RESIDUAL_COLUMNS]
