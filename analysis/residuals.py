"""Residuals over fine-tuning epochs against a baseline trend (the papers' Fig. 3 check).

The paper adopts a published trend of ImageNet-pre-trained models and plots each architecture's
residual (actual OOD minus predicted) against fine-tuning epoch; residuals near 0 at every epoch
justify using every epoch as a point. A trend fitted on the very points it checks has mean
residual 0 by construction, so the check here is never circular: by default each
architecture's points are checked against the trend fitted on the *other* architectures' points
of the same group (leave-one-architecture-out, ``loao_residuals``); a trend given in a baseline
file, or another group's trend, is used as it is (``epoch_residuals``). The group checked is the
``full`` one (ImageNet-pre-trained models) when there is one, else the baseline. Residuals are
fractions.
"""

from __future__ import annotations


import numpy as np
import pandas as pd

from analysis.trends import Trend, effective_robustness, fit_trend

RESIDUAL_COLUMNS = ["arch", "epoch", "mean", "std", "min", "max", "n"]


def residual_subject(groups: list[str], baseline: str) -> str | None:
    """The group whose points the check looks at: the first ``full`` group (ImageNet's when there is
    one), else ``baseline``; None when neither has points. ``groups`` in display order."""
    from analysis.groups import is_full

    fulls = [g for g in groups if is_full(g)]
    fulls.sort(key=lambda g: "imagenet" not in g)
    if fulls:
        return fulls[0]
    return baseline if baseline in groups else None


def loao_residuals(points: pd.DataFrame, transform: str, by: str = "arch", x: str = "id_f1",
                   y: str = "ood_f1") -> tuple[pd.DataFrame, list[str]]:
    """Leave-one-architecture-out residuals: each ``by`` value's points against the trend fitted on
    the group's other points. Returns (``epoch_residuals`` table, the values that could not be
    checked because the other points could not fit a trend)."""
    parts, skipped = [], []
    for value in sorted(points[by].astype(str).unique()):
        mine = points[by].astype(str) == value
        try:
            trend = fit_trend(points.loc[~mine, x], points.loc[~mine, y], transform)
        except ValueError:
            skipped.append(value)
            continue
        parts.append(epoch_residuals(points[mine], trend, by, x, y))
    parts = [p for p in parts if not p.empty]
    return (pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=RESIDUAL_COLUMNS)), skipped


def epoch_residuals(points: pd.DataFrame, trend: Trend, by: str = "arch", x: str = "id_f1",
                    y: str = "ood_f1") -> pd.DataFrame:
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
    for col in (x, y, "epoch", by):
        if col not in points.columns:
            raise ValueError(f"residuals need a column {col!r}; the points have none")
    res = effective_robustness(trend, points[x], points[y])
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
