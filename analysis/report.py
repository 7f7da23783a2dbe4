"""The sweep report: per-group trend fits, effective robustness of every point, CSVs and the plot.

Only finished trials enter the fits; every point gets an ``er`` (fraction) against the baseline
group's trend. Files hold fractions; the printed summary shows percent and percentage points.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.ingest import load_tables
from analysis.plots import ordered_groups, scatter_plot
from analysis.transforms import check_transform
from analysis.trends import Trend, bootstrap_band, effective_robustness, fit_trend

TREND_COLUMNS = ["group", "n", "slope", "intercept", "r2", "mean_id_f1", "mean_ood_f1", "mean_er"]
PathLike = str | os.PathLike


def group_label(intervention: object, value: object) -> str:
    """"scratch", "full", or "<intervention>=<value>" with integral numbers printed as ints."""
    if intervention in ("scratch", "full") or _missing(value):
        return str(intervention)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"{intervention}={value}"


def add_group_column(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``df`` with a ``group`` column (see ``group_label``) unless it has one."""
    if "group" in df.columns:
        return df.copy()
    if "intervention" not in df.columns:
        raise ValueError("the trials have no 'intervention' key to group by; pass --group-by COL")
    out = df.copy()
    values = out["value"] if "value" in out.columns else [None] * len(out)
    out["group"] = [group_label(i, v) for i, v in zip(out["intervention"], values, strict=True)]
    return out


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


def write_report(
    paths: PathLike | Iterable[PathLike],
    out_dir: PathLike | None = None,
    transform: str = "probit",
    baseline: str = "scratch",
    group_by: str = "group",
) -> Path:
    """Load experiments, fit trends, write points.csv, trends.csv and scatter.png/.pdf.

    Args:
        paths: sweep or Tune experiment dirs (see ``analysis.ingest``).
        out_dir: where the files go; default ``<first path>/report``.
        transform: "probit" | "logit" | "linear", for fits and plot axes.
        baseline: the group whose trend defines effective robustness (ER is NaN without it).
        group_by: column that defines groups; "group" is derived from intervention and value
            (``add_group_column``). Either way the labels land in the ``group`` column.
    Returns:
        The output directory.
    """
    check_transform(transform)
    path_list = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    trials, rows = load_tables(path_list)
    if rows.empty:
        raise ValueError(
            f"{path_list[0]}: no fine-tuning results yet ({_status_counts(trials)}); "
            "wait for trials to report an epoch, or read their error.txt"
        )
    if group_by == "group":
        rows, trials = add_group_column(rows), add_group_column(trials)
    elif group_by not in rows.columns:
        choices = ", ".join(rows.columns)
        raise ValueError(f"no column {group_by!r} to group by; choose one of: {choices}")
    # The labels always live in "group"; the column grouped by keeps its values.
    rows["group"] = rows[group_by].map(_label)
    trials["group"] = trials[group_by].map(_label)

    finished = rows[rows["status"] == "finished"]
    trends = fit_groups(finished, transform)
    base = trends.get(str(baseline))
    if base is None:
        warnings.warn(f"no trend for baseline group {baseline!r}; ER columns are NaN", stacklevel=2)
        rows["er"] = np.nan
    else:
        rows["er"] = effective_robustness(base, rows["id_f1"], rows["ood_f1"])
    finished = rows[rows["status"] == "finished"]
    table = _trend_table(finished, trends, str(baseline))

    out = Path(out_dir) if out_dir is not None else Path(path_list[0]).expanduser() / "report"
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "points.csv", out / "trends.csv"]
    rows.to_csv(written[0], index=False)
    table.to_csv(written[1], index=False)
    if finished.empty:
        warnings.warn("no finished trial yet; no trends and no plot", stacklevel=2)
    else:
        bands = _bands(finished, trends, transform)
        png = scatter_plot(
            finished, trends, out / "scatter.png", transform, "group", str(baseline), bands
        )
        written += [png, png.with_suffix(".pdf")]
    print(_summary(path_list, trials, rows, table, transform, str(baseline), written))
    return out


def _label(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _trend_table(finished: pd.DataFrame, trends: dict[str, Trend], baseline: str) -> pd.DataFrame:
    records = []
    for g in ordered_groups(finished["group"].unique(), baseline):
        sub = finished[finished["group"] == g]
        t = trends.get(g)
        records.append(
            {
                "group": g,
                "n": t.n if t else len(sub),
                "slope": t.slope if t else np.nan,
                "intercept": t.intercept if t else np.nan,
                "r2": t.r2 if t else np.nan,
                "mean_id_f1": sub["id_f1"].mean(),
                "mean_ood_f1": sub["ood_f1"].mean(),
                "mean_er": sub["er"].mean(),
            }
        )
    return pd.DataFrame.from_records(records, columns=TREND_COLUMNS)


def _bands(finished: pd.DataFrame, trends: dict[str, Trend], transform: str) -> dict:
    bands = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the fits above already warned about dropped points
        for g in trends:
            sub = finished[finished["group"] == g]
            try:
                bands[g] = bootstrap_band(sub["id_f1"], sub["ood_f1"], transform, 1000, seed=0)
            except ValueError:
                pass
    return bands


def _status_counts(trials: pd.DataFrame) -> str:
    counts = trials["status"].value_counts()
    order = ("finished", "errored", "running", "pending")
    parts = [f"{counts[s]} {s}" for s in order if s in counts]
    return f"{len(trials)} trials: " + ", ".join(parts) if parts else "0 trials"


def _summary(
    paths: list, trials: pd.DataFrame, rows: pd.DataFrame, table: pd.DataFrame,
    transform: str, baseline: str, written: list[Path],
) -> str:
    n_exp = trials["experiment"].nunique()
    lines = [
        f"{n_exp} experiment(s) under {', '.join(map(str, paths))}",
        f"{_status_counts(trials)}; {len(rows)} points; transform {transform}; baseline {baseline}",
        "",
    ]
    shown = pd.DataFrame(
        {
            "group": table["group"],
            "n": table["n"],
            "slope": table["slope"].round(3),
            "intercept": table["intercept"].round(3),
            "r2": table["r2"].round(3),
            "ID F1 %": (100 * table["mean_id_f1"]).round(1),
            "OOD F1 %": (100 * table["mean_ood_f1"]).round(1),
            "ER pp": (100 * table["mean_er"]).round(2),
        }
    )
    lines.append(shown.to_string(index=False) if len(shown) else "(no finished points to fit)")
    excluded = trials[trials["status"] != "finished"]
    if len(excluded):
        lines += ["", f"Excluded from fits ({len(excluded)} trial(s) not finished):"]
        for _, t in excluded.iterrows():
            err = t.get("error")
            note = f"  {err}" if isinstance(err, str) and err else ""
            lines.append(
                f"  {t['trial_id']}  {t['status']:<8}  {t['group']}  "
                f"epochs {t['epochs_done']}{note}"
            )
    lines += ["", "Wrote:"] + [f"  {p}" for p in written]
    return "\n".join(lines)
