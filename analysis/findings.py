"""The report's words: one finding per group, and the notes a reader of the paper needs.

A finding states a group's mean effective robustness against its baseline with its 95% CI, e.g.
``synthnet/depth=2 (5 classes, 4,000 images): ER -2.1 pp [-3.0, -1.2] vs scratch (below)``.
Notes say what the numbers are and which choices behind them the papers leave open (the scratch
recipe, whether semantics sides were balanced), built from what the trials recorded.
"""
from __future__ import annotations

import json
import math

import pandas as pd

from analysis.groups import split_target
from analysis.summary import FEW_TRIALS

METRIC_NAMES = {"f1": "macro-F1", "acc": "accuracy"}


def _number(value) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else v


def subset_text(row) -> str:
    """`(5 classes, 4,000 images)` from the row's pre-training subset size, or '' when unknown."""
    classes, images = _number(row.get("subset_classes")), _number(row.get("subset_images"))
    parts = ([f"{classes:,.0f} classes"] if classes else []) + ([f"{images:,.0f} images"] if images else [])
    return f" ({', '.join(parts)})" if parts else ""


def finding_lines(table: pd.DataFrame, baseline: str) -> list[str]:
    """One sentence per fitted group that is not a baseline (ER in percentage points)."""
    lines = []
    for _, row in table.iterrows():
        group = str(row["group"])
        if row.get("trend_origin") != "fit" or split_target(group)[1] == baseline:
            continue
        mean, lo, hi = (_number(row.get(k)) for k in ("mean_er", "er_ci_lo", "er_ci_hi"))
        if mean is None:
            lines.append(f"{group}{subset_text(row)}: no ER (no {baseline} trend to compare with)")
            continue
        ci = f" [{100 * lo:+.1f}, {100 * hi:+.1f}]" if lo is not None and hi is not None else ""
        few = bool(row.get("few_trials"))
        verdict = ("" if few or lo is None or hi is None else " (above)" if lo > 0 else " (below)" if hi < 0
                   else " (CI includes 0)")
        few = f"; only {int(row['n_trials'])} trial(s): no verdict" if few else ""
        against = split_target(str(row.get("baseline") or baseline))[1]  # its own target's, as the group's prefix says
        lines.append(f"{group}{subset_text(row)}: ER {100 * mean:+.1f} pp{ci} vs {against}{verdict}{few}")
    return lines


def report_notes(rows: pd.DataFrame, metric: str, ood: str, baseline: str, given: dict) -> list[str]:
    """Notes for the HTML page and the printed summary."""
    name = METRIC_NAMES[metric]
    notes = [
        (f"Scores are {name}" + (" over the classes present in each split's labels (WILDS)" if metric == "f1" else "")
         + f"; OOD is `{ood}`. Files hold fractions; this page shows percent and percentage points (pp)."),
        (f"Confidence intervals of a group's mean ER resample its trials ({FEW_TRIALS} or more are needed for a "
         "meaningful interval): a trial's fine-tuning epochs are not independent points, so they stay together."),
    ]
    if (rows["intervention"] == "scratch").any() if "intervention" in rows.columns else False:
        notes.append("Scratch cells train from random initialisation with the fine-tuning recipe (the papers do not "
                     "give a from-scratch recipe); every ER against `scratch` is measured against that trend.")
    if "intervention" in rows.columns and (rows["intervention"] == "semantics").any():
        params = rows.loc[rows["intervention"] == "semantics", "intervention_params"].dropna().map(json.loads)
        balanced = {bool(p.get("balanced", True)) for p in params} or {True}
        notes.append("Label semantics: the animal and object sides were " + (
            "balanced to equal image counts (the larger side subsampled, class-balanced)" if balanced == {True}
            else "used whole, not balanced" if balanced == {False} else "balanced in some cells and not in others"
        ) + "; the paper describes no subsampling (its sides hold ~517K and ~764K images).")
    for trend_name, t in given.items():
        notes.append(f"Baseline {trend_name!r} is given as parameters (slope {t.slope:g}, intercept {t.intercept:g}, "
                     f"{t.transform}); it has no points and no bootstrap band.")
    if "git_sha" in rows.columns:
        shas = sorted(str(s) for s in rows["git_sha"].dropna().unique())
        if len(shas) > 1:
            notes.append(f"The trials ran at {len(shas)} project versions: {', '.join(shas)}.")
    return notes
