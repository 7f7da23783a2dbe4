"""WILDS-style model selection: per cell, the fine-tuning epoch with the best OOD validation F1.

WILDS selects iWildCam models on the OOD `val` split's macro-F1; the papers use every epoch as a
scatter point instead. The report gives both: this table says which epoch each cell would ship
and what it scores, next to its last epoch.
"""
from __future__ import annotations

import pandas as pd

SELECTION_METRIC = "ood_val_f1"
KEEP = ("group", "cell_id", "arch", "seed", "trial_id")


def model_selection(rows: pd.DataFrame, metric: str = "f1", ood: str = "ood") -> pd.DataFrame:
    """One row per trial with ``SELECTION_METRIC``: its selected epoch (best OOD val F1, the earliest
    on a tie) and that epoch's ``id_<metric>`` / ``<ood>_<metric>``, beside its last epoch's.

    Empty when the trials report no OOD validation split (targets without `val`).
    """
    if SELECTION_METRIC not in rows.columns or rows[SELECTION_METRIC].isna().all():
        return pd.DataFrame()
    x, y = f"id_{metric}", f"{ood}_{metric}"
    records = []
    for trial_id, sub in rows.dropna(subset=[SELECTION_METRIC]).groupby("trial_id", sort=False):
        sub = sub.sort_values("epoch")
        best = sub.loc[sub[SELECTION_METRIC].idxmax()]
        last = sub.iloc[-1]
        rec = {k: best.get(k) for k in KEEP if k in sub.columns}
        rec.update({"selected_epoch": int(best["epoch"]), SELECTION_METRIC: best[SELECTION_METRIC],
                    f"selected_{x}": best[x], f"selected_{y}": best[y], "last_epoch": int(last["epoch"]),
                    f"last_{x}": last[x], f"last_{y}": last[y]})
        records.append(rec)
    return pd.DataFrame.from_records(records)
