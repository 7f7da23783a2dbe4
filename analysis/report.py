"""The sweep report: per-group trend fits, effective robustness, residuals, CSVs, plots, HTML.

Only finished trials enter the fits, bands, ER means and residuals; every point (any status)
gets an ``er`` (fraction) against the baseline trend in ``points.csv``. Files hold fractions;
the plots, the HTML page and the printed summary show percent and percentage points.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import remote
from analysis.baselines import load_baselines

# Re-exported: the first version defined these here and callers import them from here.
from analysis.groups import (
    add_group_column,
    group_colors,
    group_label,
    ordered_groups,
)
from analysis.ingest import load_tables
from analysis.residuals import epoch_residuals, residual_baseline, residual_points
from analysis.summary import TREND_COLUMNS, fit_groups, summarize_groups
from analysis.transforms import check_transform
from analysis.trends import Trend, bootstrap_band, effective_robustness

__all__ = [
    "FIGURES", "TREND_COLUMNS", "add_group_column", "fit_groups", "group_colors", "group_label",
    "ordered_groups", "write_report",
]
PathLike = str | os.PathLike
FIGURES = ("scatter", "residuals", "er_bars")


def write_report(
    paths: PathLike | Iterable[PathLike],
    out_dir: PathLike | None = None,
    transform: str = "probit",
    baseline: str = "scratch",
    group_by: str = "group",
    baseline_file: PathLike | None = None,
    progress: bool | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    residual_trend: str | None = None,
) -> Path | str:
    """Load experiments, fit trends, write the CSVs, the three figures and ``report.html``.

    Writes ``points.csv`` (one row per trial x epoch, with ``group`` and ``er``), ``trends.csv``
    (one row per group: ``analysis.summary.TREND_COLUMNS``, plus the pre-training subset size
    when the trials reported it), ``residuals.csv``, ``scatter``/``residuals``/``er_bars`` as
    ``.png`` and ``.pdf``, and ``report.html`` (self-contained).

    Args:
        paths: sweep or Tune experiment dirs, local or URIs (see ``analysis.ingest``).
        out_dir: where the files go; default ``<first path>/report``. A URI (or the default for
            a remote path) is written locally first, then uploaded.
        transform: "probit" | "logit" | "linear", for fits and plot axes.
        baseline: the group (or baseline-file entry) whose trend defines effective robustness;
            ER is NaN, with a warning, when it has none.
        group_by: column that defines groups; "group" is derived from intervention and value
            (``add_group_column``). Either way the labels land in the ``group`` column.
        baseline_file: YAML/JSON trends given as parameters (``analysis.baselines``).
        progress: progress bar while reading trials (see ``load_experiments``).
        n_boot, seed: bootstrap resamples and seed of the bands and the ER CIs.
        residual_trend: the group (or baseline-file entry) whose trend the residual-by-epoch
            check uses; default the ``full`` group when fitted, else ``baseline``.
    Returns:
        The output directory (a URI string when the output is remote).
    """
    check_transform(transform)
    path_list = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if not path_list:
        raise ValueError("no path given; pass a sweep directory or a Tune experiment dir")
    given = load_baselines(baseline_file) if baseline_file is not None else {}
    trials, rows = load_tables(path_list, progress=progress)
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
    clash = sorted(set(given) & set(rows["group"]))
    if clash:
        raise ValueError(
            f"{baseline_file}: baseline {clash[0]!r} is also a group of the points; rename it"
        )

    finished = rows[rows["status"] == "finished"]
    trends = fit_groups(finished, transform)
    if residual_trend is not None and str(residual_trend) not in {**given, **trends}:
        known = ", ".join(sorted({*given, *trends})) or "none"
        raise ValueError(f"--residual-trend {residual_trend!r} has no fitted or given trend; trends: {known}")
    base = trends.get(str(baseline), given.get(str(baseline)))
    if base is None:
        warnings.warn(f"no trend for baseline group {baseline!r}; ER columns are NaN", stacklevel=2)
        rows["er"] = np.nan
    else:
        rows["er"] = effective_robustness(base, rows["id_f1"], rows["ood_f1"])
    finished = rows[rows["status"] == "finished"]
    table = summarize_groups(
        finished, trends, base, "group", str(baseline), given, n_boot=n_boot, seed=seed
    )
    colors = group_colors([*rows["group"].unique(), *given], str(baseline))

    out_text = _out_location(path_list[0], out_dir)
    with tempfile.TemporaryDirectory(prefix="analysis-report-") as staging:
        out = Path(staging) if remote.is_uri(out_text) else Path(out_text).expanduser()
        out.mkdir(parents=True, exist_ok=True)
        rows.to_csv(out / "points.csv", index=False)
        table.to_csv(out / "trends.csv", index=False)
        written = ["points.csv", "trends.csv"]
        figures, res_name = [], None
        if finished.empty:
            warnings.warn("no finished trial yet; no trends and no plots", stacklevel=2)
        else:
            figures, res_name = _figures(
                out, finished, trends, given, base, table, str(baseline), transform, colors,
                n_boot, seed, residual_trend,
            )
            written += ["residuals.csv"] if res_name else []
            written += [f"{f}.{ext}" for f, _, _ in figures for ext in ("png", "pdf")]
        from analysis.html_report import ReportPage, render

        page = ReportPage(
            paths=[str(p) for p in path_list], transform=transform, baseline=str(baseline),
            group_by=group_by, trials=trials, n_points=len(rows), summary=table, colors=colors,
            figures=[(title, out / f"{name}.png", cap) for name, title, cap in figures],
            residual_trend=res_name, n_boot=n_boot, seed=seed, files=written,
            notes=_notes(base, given, str(baseline), res_name),
        )
        (out / "report.html").write_text(render(page), encoding="utf-8")
        written.append("report.html")
        if remote.is_uri(out_text):
            remote.upload_dir(out, out_text)
        shown = [remote.join(out_text, f) if remote.is_uri(out_text) else out / f for f in written]
        print(_summary(path_list, trials, rows, table, transform, str(baseline), shown))
    return out_text if remote.is_uri(out_text) else Path(out_text).expanduser()


def _figures(
    out: Path, finished: pd.DataFrame, trends: dict[str, Trend], given: dict[str, Trend],
    base: Trend | None, table: pd.DataFrame, baseline: str, transform: str, colors: dict,
    n_boot: int, seed: int, residual_trend: str | None = None,
) -> tuple[list[tuple[str, str, str]], str | None]:
    """Draw the figures that the data allow; (name, title, caption) of each, and the name of
    the residual check's trend."""
    from analysis.plots import er_bar_plot, residual_plot, scatter_plot

    unit = "percent" if transform == "linear" else f"percent on {transform} axes"
    bands = _bands(finished, trends, transform, n_boot, seed)
    scatter_plot(
        finished, trends, out / "scatter.png", transform, "group", baseline, bands,
        colors=colors, file_trends=given,
    )
    figs = [(
        "scatter", "ID vs OOD macro-F1",
        (f"Each point is a model after one fine-tuning epoch ({unit}); lines are per-group OLS "
         f"fits in {transform} space with shaded 95% bootstrap bands ({n_boot} resamples); "
         "dash-dot lines are baselines given as parameters; dashed is y = x."),
    )]
    res_name = str(residual_trend) if residual_trend is not None else residual_baseline(
        {**given, **trends}, baseline)
    if res_name is not None:
        pts = residual_points(finished, res_name)
        res = epoch_residuals(pts, {**given, **trends}[res_name], by="arch" if "arch" in
                              finished.columns else "group")
        if not res.empty:
            res.to_csv(out / "residuals.csv", index=False)
            residual_plot(res, out / "residuals.png", trend_label=res_name)
            whose = f"the {res_name!r} group's points" if (
                finished["group"] == res_name).any() else "all finished points"
            figs.append((
                "residuals", f"Residuals against the {res_name} trend",
                (f"OOD macro-F1 minus the {res_name} trend's prediction (percentage points) "
                 f"for {whose}, per architecture and fine-tuning epoch: mean over seeds with "
                 "+-1 standard-deviation error bars. Values near 0 at every epoch justify using "
                 "every epoch as a point (paper Fig. 3)."),
            ))
        else:
            res_name = None
    if base is not None:
        er_bar_plot(table, out / "er_bars.png", colors, baseline)
        figs.append((
            "er_bars", f"Mean effective robustness vs {baseline}",
            (f"Mean ER of each group's points against the {baseline} trend (percentage "
             f"points), with 95% bootstrap CIs of the mean ({n_boot} resamples of the points, "
             "seeded); the hatched bar is the baseline itself."),
        ))
    return figs, res_name


def _notes(base: Trend | None, given: dict[str, Trend], baseline: str, res: str | None) -> list:
    notes = [
        ("Scores are macro-F1 over the classes present in each split's labels (WILDS); files "
         "hold fractions, this page shows percent and percentage points (pp)."),
    ]
    if base is None:
        notes.append(f"No trend for the baseline {baseline!r}: ER is not available.")
    for name, t in given.items():
        notes.append(
            f"Baseline {name!r} is given as parameters (slope {t.slope:g}, intercept "
            f"{t.intercept:g}, {t.transform}); it has no points and no bootstrap band."
        )
    if res is not None and res != baseline:
        notes.append(
            f"The residual check uses the {res!r} trend, as the paper's Fig. 3 uses the "
            "ImageNet-pre-trained trend; ER uses the baseline above."
        )
    return notes


def _out_location(first: PathLike, out_dir: PathLike | None) -> str:
    if out_dir is not None:
        return str(out_dir)
    if remote.is_uri(first):
        return remote.join(str(first), "report")
    return str(Path(first).expanduser() / "report")


def _label(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _bands(
    finished: pd.DataFrame, trends: dict[str, Trend], transform: str, n_boot: int, seed: int
) -> dict:
    bands = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the fits above already warned about dropped points
        for g in trends:
            sub = finished[finished["group"] == g]
            try:
                bands[g] = bootstrap_band(sub["id_f1"], sub["ood_f1"], transform, n_boot, seed)
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
    transform: str, baseline: str, written: list,
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
            "ER 95% CI pp": [_ci_text(lo, hi) for lo, hi in zip(
                table["er_ci_lo"], table["er_ci_hi"], strict=True)],
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


def _ci_text(lo: float, hi: float) -> str:
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return "-"
    return f"[{100 * lo:+.2f}, {100 * hi:+.2f}]"
