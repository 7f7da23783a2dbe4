"""The ID-domain x OOD-domain grid of effective robustness (the papers' DomainNet experiment).

Each fine-tuning target is one ID domain; its trials report every other domain as its own OOD
set (`ood_<domain>_acc` / `ood_<domain>_f1`). For each (ID, OOD) pair, the target's baseline
(scratch) points give a trend of OOD-on-that-domain against ID, and the pre-trained (`full`)
points of the same target are measured against it: one mean ER, with a 95% CI that resamples
trials, per cell of the grid.
"""
from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd

from analysis.groups import is_full, split_target, with_target
from analysis.trends import bootstrap_cluster_mean_ci, effective_robustness, fit_trend

GRID_COLUMNS = ["id_domain", "ood_domain", "target", "group", "baseline", "mean_er", "er_ci_lo", "er_ci_hi",
                "n_trials"]


def ood_domains(columns, metric: str) -> list[str]:
    """Domains with per-domain OOD columns `ood_<domain>_<metric>`."""
    found = (re.fullmatch(rf"ood_(.+)_{metric}", str(c)) for c in columns)
    return sorted({m.group(1) for m in found if m and m.group(1) != "val"})


def id_domain(target: str, options: object) -> str:
    """The ID domain of a target: its `domain` option, else its name."""
    try:
        return json.loads(options or "{}").get("domain") or str(target)
    except (TypeError, json.JSONDecodeError):
        return str(target)


def domain_er_grid(points: pd.DataFrame, metric: str, baseline: str, transform: str, n_boot: int = 1000,
                   seed: int = 0) -> pd.DataFrame:
    """``GRID_COLUMNS`` for every (target, OOD domain) pair that has both baseline and `full` points."""
    domains = ood_domains(points.columns, metric)
    if not domains or "target" not in points.columns:
        return pd.DataFrame(columns=GRID_COLUMNS)
    records = []
    x = f"id_{metric}"
    for k, (target, sub) in enumerate(points.groupby("target", sort=True)):
        labels = sub["group"].astype(str)
        prefix = split_target(labels.iloc[0])[0]
        base_name = with_target(prefix, baseline)
        fulls = sorted({g for g in labels if is_full(g)}, key=lambda g: "imagenet" not in g)
        if not fulls or not (labels == base_name).any():
            continue
        base_pts, full_pts = sub[labels == base_name], sub[labels == fulls[0]]
        options = sub["target_options"].iloc[0] if "target_options" in sub.columns else None
        for j, domain in enumerate(domains):
            y = f"ood_{domain}_{metric}"
            if sub[y].isna().all():
                continue  # the target's own domain, or a domain it did not evaluate
            try:
                trend = fit_trend(base_pts[x], base_pts[y], transform)
            except ValueError:
                continue
            er = effective_robustness(trend, full_pts[x], full_pts[y])
            lo, hi = bootstrap_cluster_mean_ci(er, full_pts["trial_id"], n_boot=n_boot, seed=seed + 97 * k + j)
            records.append({"id_domain": id_domain(target, options), "ood_domain": domain, "target": target,
                            "group": fulls[0], "baseline": base_name,
                            "mean_er": float(np.nanmean(er)) if np.isfinite(er).any() else np.nan,
                            "er_ci_lo": lo, "er_ci_hi": hi, "n_trials": int(full_pts["trial_id"].nunique())})
    return pd.DataFrame.from_records(records, columns=GRID_COLUMNS)


def grid_matrix(grid: pd.DataFrame) -> pd.DataFrame:
    """The grid as a square table: rows ID domains, columns OOD domains, values mean ER (NaN off-pairs)."""
    names = sorted(set(grid["id_domain"]) | set(grid["ood_domain"]))
    return grid.pivot_table(index="id_domain", columns="ood_domain", values="mean_er").reindex(index=[
        n for n in names if n in set(grid["id_domain"])], columns=names)
