"""The sweep report: per-group trend fits, effective robustness, residuals, CSVs, plots, HTML.

Only finished trials enter the fits, bands, ER means and residuals; every point (any status)
gets an ``er`` (fraction) against its group's baseline trend in ``points.csv``. With several
targets each group is measured against its own target's baseline. Files hold fractions; the
plots, the HTML page and the printed summary show percent and percentage points.
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
from analysis.claims import Claim, compare
from analysis.domain_grid import domain_er_grid
from analysis.findings import METRIC_NAMES, finding_lines, report_notes

# Re-exported: the first version defined these here and callers import them from here.
from analysis.groups import (
    add_group_column,
    group_colors,
    group_label,
    ordered_groups,
    split_target,
    with_target,
)
from analysis.ingest import load_tables
from analysis.selection import model_selection
from analysis.summary import TREND_COLUMNS, fit_groups, summarize_groups
from analysis.natural_split import embedded_figure, find_features, natural_split_er
from analysis.support import by_support, support_lines, support_table
from analysis.transforms import check_transform
from analysis.user_split import read_user_splits, user_figure
from analysis.trends import Trend, effective_robustness

__all__ = [
    "FIGURES", "TREND_COLUMNS", "add_group_column", "fit_groups", "group_colors", "group_label",
    "ordered_groups", "write_report",
]
PathLike = str | os.PathLike
FIGURES = ("scatter", "residuals", "er_bars", "domain_er", "support_er")


def score_columns(metric: str, ood: str) -> tuple[str, str, str]:
    """(ID column, OOD column, OOD set name) for `--metric` and `--ood` (`ood` or a domain: `sketch`)."""
    if metric not in METRIC_NAMES:
        raise ValueError(f"--metric {metric!r}: choose one of {', '.join(METRIC_NAMES)}")
    ood_set = ood if ood == "ood" or ood.startswith("ood_") else f"ood_{ood}"
    return f"id_{metric}", f"{ood_set}_{metric}", ood_set


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
    metric: str = "f1",
    ood: str = "ood",
    claims: list[Claim] | None = None,
) -> Path | str:
    """Load experiments, fit trends, write the CSVs, the figures and ``report.html``.

    Writes ``points.csv`` (one row per trial x epoch, with ``group`` and ``er``), ``trends.csv``
    (one row per group: ``analysis.summary.TREND_COLUMNS``, plus the pre-training subset size),
    ``selection.csv`` (WILDS model selection per cell, when the trials report OOD validation
    scores), ``residuals.csv``, ``domain_er.csv`` (several targets with per-domain OOD sets),
    the figures as ``.png`` and ``.pdf``, and ``report.html`` (self-contained).

    Args:
        paths: sweep or Tune experiment dirs, local or URIs (see ``analysis.ingest``). A cell
            found in several (e.g. a sweep and the baselines sweep it reuses) counts once.
        out_dir: where the files go; default ``<first path>/report``. A URI (or the default for
            a remote path) is written locally first, then uploaded.
        transform: "probit" | "logit" | "linear", for fits and plot axes.
        baseline: the group (or baseline-file entry) whose trend defines effective robustness;
            with several targets, each target's group of that name. ER is NaN, with a warning,
            when there is none.
        group_by: "group" (default key: target when several, source, intervention, value) or
            one or more comma-separated columns; the labels land in the ``group`` column.
        baseline_file: YAML/JSON trends given as parameters (``analysis.baselines``).
        progress: progress bar while reading trials (see ``load_experiments``).
        n_boot, seed: bootstrap resamples and seed of the bands and the ER CIs.
        residual_trend: the trend of the residual-by-epoch check: a group or baseline-file entry;
            default (or the checked group's own name) leave-one-architecture-out fits.
        metric: "f1" (macro-F1) or "acc" (accuracy), for every fit and figure.
        ood: the OOD set: "ood" (pooled) or a domain with its own metrics (``sketch``).
        claims: the paper's findings (``analysis.claims``) to compare this run with; a sweep script
            passes its own.
    Returns:
        The output directory (a URI string when the output is remote).
    """
    check_transform(transform)
    x, y, ood_set = score_columns(metric, ood)
    path_list = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if not path_list:
        raise ValueError("no path given; pass a sweep directory or a Tune experiment dir")
    given = load_baselines(baseline_file) if baseline_file is not None else {}
    trials, rows = _one_per_cell(*load_tables(path_list, progress=progress))
    if rows.empty:
        raise ValueError(
            f"{path_list[0]}: no fine-tuning results yet ({_status_counts(trials)}); "
            "wait for trials to report an epoch, or read their error.txt"
        )
    if y not in rows.columns:
        sets = sorted({c[: -len(metric) - 1] for c in rows.columns if c.startswith("ood") and c.endswith(f"_{metric}")})
        raise ValueError(f"--ood {ood}: the trials report no {y}; their OOD sets: {', '.join(sets) or 'none'}")
    rows, trials = add_group_column(rows, group_by), add_group_column(trials, group_by)
    clash = sorted(set(given) & set(rows["group"]))
    if clash:
        raise ValueError(f"{baseline_file}: baseline {clash[0]!r} is also a group of the points; rename it")

    finished = rows[rows["status"] == "finished"]
    trends = fit_groups(finished, transform, x=x, y=y)
    if residual_trend is not None and str(residual_trend) not in {**given, **trends}:
        known = ", ".join(sorted({*given, *trends})) or "none"
        raise ValueError(f"--residual-trend {residual_trend!r} has no fitted or given trend; trends: {known}")
    baselines = {g: _baseline_of(g, str(baseline), trends, given) for g in rows["group"].unique()}
    if not any(t is not None for _, t in baselines.values()):
        warnings.warn(f"no trend for baseline group {baseline!r}; ER columns are NaN", stacklevel=2)
    rows["er"] = np.nan
    for g, (_, base) in baselines.items():
        if base is not None:
            mask = rows["group"] == g
            rows.loc[mask, "er"] = effective_robustness(base, rows.loc[mask, x], rows.loc[mask, y])
    finished = rows[rows["status"] == "finished"]
    table = summarize_groups(finished, trends, baselines, "group", str(baseline), given, n_boot=n_boot, seed=seed,
                             x=x, y=y, metric=metric, ood_set=ood_set)
    colors = group_colors([*rows["group"].unique(), *given], str(baseline))
    selection = model_selection(finished, metric, ood_set)
    findings = finding_lines(table, str(baseline))
    grid = domain_er_grid(finished, metric, str(baseline), transform, n_boot, seed)
    user_splits, split_notes = read_user_splits(path_list, finished)  # a user's own shift: split by `split`
    support = support_table(grid, finished, {k: n for u in user_splits.values() for k, n in u.sizes().items()})
    natural = [embedded_figure(path, *natural_split_er(path, finished, trials, metric, transform, n_boot, seed))
               for path in find_features(path_list)]
    if natural:
        support = by_support(pd.concat([support, *(shift.table for shift in natural)], ignore_index=True))
    natural += [user_figure(mine, support) for mine in user_splits.values()]
    compared = compare(claims or [], table, support if not support.empty else grid)

    out_text = _out_location(path_list[0], out_dir)
    with tempfile.TemporaryDirectory(prefix="analysis-report-") as staging:
        out = Path(staging) if remote.is_uri(out_text) else Path(out_text).expanduser()
        out.mkdir(parents=True, exist_ok=True)
        rows.to_csv(out / "points.csv", index=False)
        table.to_csv(out / "trends.csv", index=False)
        written = ["points.csv", "trends.csv"]
        if not selection.empty:
            selection.to_csv(out / "selection.csv", index=False)
            written.append("selection.csv")
        figures, checks = [], []
        if finished.empty:
            warnings.warn("no finished trial yet; no trends and no plots", stacklevel=2)
        else:
            from analysis.figures import draw_figures

            drawn = draw_figures(out, finished, trends, given, table, str(baseline), transform, colors, n_boot,
                                 seed, residual_trend, metric, ood_set, grid, support, natural)
            figures, checks = drawn.figures, drawn.skipped
            written += drawn.files
        from analysis.html_report import ReportPage, render

        notes = report_notes(rows, metric, ood_set, str(baseline), given) + split_notes + checks
        page = ReportPage(
            paths=[str(p) for p in path_list], transform=transform, baseline=str(baseline),
            group_by=group_by, trials=trials, n_points=len(rows), summary=table, colors=colors,
            figures=[(title, out / f"{name}.png", cap) for name, title, cap in figures],
            residual_trend=next((title for name, title, _ in figures if name == "residuals"), None),
            n_boot=n_boot, seed=seed, files=written, notes=notes, findings=findings, metric=metric,
            ood_set=ood_set, selection=selection, compared=compared, support=support,
        )
        (out / "report.html").write_text(render(page), encoding="utf-8")
        written.append("report.html")
        if remote.is_uri(out_text):
            remote.upload_dir(out, out_text)
        shown = [remote.join(out_text, f) if remote.is_uri(out_text) else out / f for f in written]
        print(_summary(path_list, trials, rows, table, transform, str(baseline), shown, findings, metric, compared,
                       support_lines(support)))
    return out_text if remote.is_uri(out_text) else Path(out_text).expanduser()


def _baseline_of(group: str, baseline: str, trends: dict[str, Trend], given: dict[str, Trend]
                 ) -> tuple[str | None, Trend | None]:
    """(name, trend) of the baseline a group is measured against: its own target's `baseline` group,
    else a given trend of that name."""
    name = with_target(split_target(group)[0], baseline)
    if name in trends:
        return name, trends[name]
    if baseline in given:
        return baseline, given[baseline]
    return None, None


def _one_per_cell(trials: pd.DataFrame, rows: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Keep one trial per cell id: a cell found in several experiments or sweeps (a sweep and the
    baselines sweep whose cells it shares) would otherwise count twice. Finished beats unfinished,
    then more epochs, then the first path given."""
    if "cell_id" not in trials.columns or trials["cell_id"].isna().all():
        return trials, rows
    rank = trials.assign(_f=(trials["status"] != "finished").astype(int), _e=-trials["epochs_done"],
                         _o=np.arange(len(trials)))
    keep = rank.sort_values(["_f", "_e", "_o"]).drop_duplicates("cell_id", keep="first")["trial_id"]
    keep = set(keep) | set(trials.loc[trials["cell_id"].isna(), "trial_id"])
    return trials[trials["trial_id"].isin(keep)], rows[rows["trial_id"].isin(keep)]


def _out_location(first: PathLike, out_dir: PathLike | None) -> str:
    if out_dir is not None:
        return str(out_dir)
    if remote.is_uri(first):
        return remote.join(str(first), "report")
    return str(Path(first).expanduser() / "report")


def _status_counts(trials: pd.DataFrame) -> str:
    counts = trials["status"].value_counts()
    order = ("finished", "errored", "running", "pending")
    parts = [f"{counts[s]} {s}" for s in order if s in counts]
    return f"{len(trials)} trials: " + ", ".join(parts) if parts else "0 trials"


def _summary(
    paths: list, trials: pd.DataFrame, rows: pd.DataFrame, table: pd.DataFrame,
    transform: str, baseline: str, written: list, findings: list[str], metric: str, compared: list[str],
    support: list[str] = (),
) -> str:
    n_exp = trials["experiment"].nunique()
    lines = [*findings, ""] if findings else []
    if support:
        lines += [f"Effective robustness per shift ({METRIC_NAMES[metric]}, pre-trained vs {baseline}, 95% CI):",
                  *(f"  {line}" for line in support), ""]
    if compared:
        lines += ["Compared with the paper:", *(f"  {line}" for line in compared), ""]
    lines += [
        f"{n_exp} experiment(s) under {', '.join(map(str, paths))}",
        f"{_status_counts(trials)}; {len(rows)} points; {METRIC_NAMES[metric]}; transform {transform}; "
        f"baseline {baseline}",
        "",
    ]
    shown = pd.DataFrame(
        {
            "group": table["group"] + np.where(table["few_trials"].fillna(False).astype(bool), " *", ""),
            "n": table["n"],
            "trials": table["n_trials"],
            "slope": table["slope"].round(3),
            # a line through 2 points has r2 = 1 by construction: shown as "-"
            "r2": [f"{r:.3f}" if n > 2 and np.isfinite(r) else "-"
                   for r, n in zip(table["r2"], table["n"], strict=True)],
            "ID %": (100 * table["mean_id"]).round(1),
            "OOD %": (100 * table["mean_ood"]).round(1),
            "ER pp": (100 * table["mean_er"]).round(2),
            "ER 95% CI pp": [_ci_text(lo, hi) for lo, hi in zip(
                table["er_ci_lo"], table["er_ci_hi"], strict=True)],
        }
    )
    lines.append(shown.to_string(index=False) if len(shown) else "(no finished points to fit)")
    if table["few_trials"].fillna(False).astype(bool).any():
        lines.append("* fewer than 3 trials: the fit and its CI rest on too few independent models")
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
