"""Which figures a report's data allow, drawn, each with a caption built from what it shows.

A check that cannot be meaningful is skipped with a sentence saying why (e.g. the residual check
of a group with one architecture, which could only be compared with its own fit).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from analysis.domain_grid import grid_matrix
from analysis.findings import METRIC_NAMES
from analysis.groups import ordered_groups, split_target
from analysis.residuals import epoch_residuals, loao_residuals, residual_subject
from analysis.trends import Trend, bootstrap_band


@dataclass
class Drawn:
    figures: list[tuple[str, str, str]] = field(default_factory=list)   # (file stem, title, caption)
    files: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)                    # why a check was not drawn


def panels(finished: pd.DataFrame, baseline: str) -> list[tuple[str, list[str]]] | None:
    """One panel per target (several targets) or per pre-training source (several sources), each
    with the baseline groups; None for a single panel."""
    groups = ordered_groups(finished["group"].unique(), baseline)
    targets = sorted({split_target(g)[0] for g in groups} - {None})
    if len(targets) > 1:
        return [(t, [g for g in groups if split_target(g)[0] == t]) for t in targets]
    if "source" not in finished.columns:
        return None
    source_of = finished.groupby("group")["source"].first().astype(str).to_dict()
    sources = sorted({s for s in source_of.values() if s != "none"})
    if len(sources) < 2:
        return None
    shared = [g for g in groups if source_of.get(g) == "none" or split_target(g)[1] == baseline]
    return [(s, shared + [g for g in groups if source_of.get(g) == s and g not in shared]) for s in sources]


def _bands(finished: pd.DataFrame, trends: dict[str, Trend], transform: str, n_boot: int, seed: int,
           x: str, y: str) -> dict:
    bands = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the fits already warned about dropped points
        for g in trends:
            sub = finished[finished["group"] == g]
            try:
                bands[g] = bootstrap_band(sub[x], sub[y], transform, n_boot, seed)
            except ValueError:
                pass
    return bands


def draw_figures(out: Path, finished: pd.DataFrame, trends: dict[str, Trend], given: dict[str, Trend],
                 table: pd.DataFrame, baseline: str, transform: str, colors: dict, n_boot: int, seed: int,
                 residual_trend: str | None, metric: str, ood_set: str, grid: pd.DataFrame,
                 support: pd.DataFrame | None = None, natural: list | None = None) -> Drawn:
    from analysis.plots import er_bar_plot, er_heatmap, scatter_plot

    drawn = Drawn()
    x, y = f"id_{metric}", f"{ood_set}_{metric}"
    name = METRIC_NAMES[metric]
    ood_name = "OOD" if ood_set == "ood" else f"OOD {ood_set.removeprefix('ood_')}"
    flagged = set(table.loc[table["few_trials"].fillna(False).astype(bool), "group"])
    unit = "percent" if transform == "linear" else f"percent on {transform} axes"

    bands = _bands(finished, trends, transform, n_boot, seed, x, y)
    split = panels(finished, baseline)
    scatter_plot(finished, trends, out / "scatter.png", transform, "group", baseline, bands, colors=colors,
                 file_trends=given, x=x, y=y, axis_names=(f"ID {name}", f"{ood_name} {name}"), panels=split,
                 flagged=flagged)
    caption = [f"Each point is a model after one fine-tuning epoch ({unit})."] + _line_captions(
        finished, trends, bands, given, baseline, transform, n_boot)
    if split:
        caption.append(f"One panel per {'target' if split_target(split[0][1][0])[0] else 'pre-training source'}, "
                       "each with the baselines.")
    if flagged:
        caption.append("'(few trials)' marks groups fitted on fewer than 3 trials: too few for a trustworthy line.")
    caption.append("The dashed line is y = x.")
    drawn.figures.append(("scatter", f"ID vs {ood_name} {name}", " ".join(caption)))

    _residual_check(drawn, out, finished, trends, given, baseline, transform, residual_trend, x, y, name)

    if table["mean_er"].notna().any():
        er_bar_plot(table, out / "er_bars.png", colors, baseline, flagged=flagged)
        hatched = any(split_target(str(g))[1] == baseline for g in table.loc[table["mean_er"].notna(), "group"])
        few = flagged & set(table.loc[table["mean_er"].notna(), "group"])
        drawn.figures.append(("er_bars", f"Mean effective robustness vs {baseline}", (
            f"Mean ER of each group's points against its {baseline} trend (percentage points), with 95% bootstrap "
            f"CIs of the mean ({n_boot} resamples of the group's trials)"
            + ("; the hatched bar is the baseline itself (about 0 by construction)" if hatched else "")
            + ("; '(few trials)': fewer than 3 trials, so the CI says little" if few else "") + ".")))

    if support is not None and not support.empty:
        from analysis.support import support_bar_plot

        support.to_csv(out / "support_er.csv", index=False)
        drawn.files.append("support_er.csv")
        support_bar_plot(support, out / "support_er.png", baseline)
        split_parts = support["reference"].astype(str).str.startswith("natural: ")  # a natural shift's parts
        left = ["the reference's tint correlated with the label with probability p, the shifted set's tint "
                "independent of it"] if (~split_parts).any() else []
        right = ["of an untinted reference: tinted, or upside down"] if (~split_parts).any() else []
        if natural or split_parts.any():
            left.append("the in-support part of each split natural shift")
            right.append("the out-of-support part of each split natural shift")
        drawn.figures.append(("support_er", "Effective robustness on in-support and out-of-support shifts", (
            f"Mean ER (pp) of the pre-trained models on each shifted test set, against the {baseline} trend of the "
            f"same reference distribution and shifted set ({name}), with 95% bootstrap CIs of the mean ({n_boot} "
            f"resamples of the trials). Left: in-support shifts ({'; '.join(left)}); right: out-of-support shifts "
            f"({'; '.join(right)}). The rule of thumb (Cohen-Wang et al.): pre-training helps the right group, "
            "not the left.")))
    for shift in natural or []:
        _natural_split(drawn, out, shift, baseline, name, n_boot)
    if (support is None or support.empty) and not grid.empty:
        grid.to_csv(out / "domain_er.csv", index=False)
        drawn.files.append("domain_er.csv")
        er_heatmap(grid_matrix(grid), out / "domain_er.png", baseline)
        drawn.figures.append(("domain_er", "Effective robustness per ID and OOD domain", (
            f"Mean ER (pp) of the pre-trained models fine-tuned on each ID domain (rows), on each other domain as its "
            f"own OOD test set (columns), against the {baseline} trend of that pair ({name})."
            f" Blue: above the {baseline} trend; red: below.")))
    drawn.files += ["residuals.csv"] if any(f[0] == "residuals" for f in drawn.figures) else []
    drawn.files += [f"{f}.{ext}" for f, _, _ in drawn.figures for ext in ("png", "pdf")]
    return drawn


def _line_captions(finished: pd.DataFrame, trends: dict[str, Trend], bands: dict, given: dict[str, Trend],
                   baseline: str, transform: str, n_boot: int) -> list[str]:
    """What the scatter's lines and bands are, naming only what `scatter_plot` draws."""
    from analysis.groups import is_full, is_scratch

    lines = [g for g in ordered_groups(finished["group"].unique(), baseline) if g in trends]
    out = []
    if lines:
        banded = [g for g in lines if g in bands]
        text = f"Lines are per-group OLS fits in {transform} space"
        if banded and len(banded) == len(lines):
            text += f", with shaded 95% bootstrap bands ({n_boot} resamples of the points)"
        elif banded:
            text += (f"; shaded: 95% bootstrap bands ({n_boot} resamples of the points) of {_and(banded)} "
                     "(the others have too few distinct points for one)")
        spanning = [g for g in lines if is_scratch(g) or is_full(g) or split_target(g)[1] == baseline]
        if spanning and len(spanning) < len(lines):
            text += (f"; the {_and(spanning)} line{'s span' if len(spanning) > 1 else ' spans'} the axes, the "
                     "others cover their own ID range")
        elif spanning:
            text += "; they span the axes"
        else:
            text += "; each covers its group's ID range"
        out.append(text + ".")
    if given:
        out.append(f"Dash-dot line{'s are trends' if len(given) > 1 else ' is a trend'} given as parameters "
                   f"({_and(list(given))}), with no points and no band.")
    return out


def _and(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _residual_check(drawn: Drawn, out: Path, finished: pd.DataFrame, trends: dict[str, Trend],
                    given: dict[str, Trend], baseline: str, transform: str, residual_trend: str | None,
                    x: str, y: str, name: str) -> None:
    from analysis.plots import residual_plot

    if "arch" not in finished.columns:
        drawn.skipped.append("The residual-by-epoch check was skipped: the trials record no architecture.")
        return
    subject = residual_subject(ordered_groups(finished["group"].unique(), baseline), baseline)
    if subject is None:
        drawn.skipped.append(f"The residual-by-epoch check was skipped: there is no full or {baseline} group.")
        return
    points = finished[finished["group"] == subject]
    if residual_trend is None or residual_trend == subject:
        if points["arch"].nunique() < 2:
            drawn.skipped.append(
                f"The residual-by-epoch check was skipped: the {subject} group has one architecture, so its trend "
                "could only be fitted on the very points it checks (residual 0 by construction); give a trend with "
                "--residual-trend or --baseline-file.")
            return
        residuals, unfit = loao_residuals(points, transform, "arch", x, y)
        against = f"a trend fitted on the other architectures of {subject} (leave-one-architecture-out)"
        label = "other archs"
        if unfit:
            drawn.skipped.append(f"Residual check: no trend could be fitted without {', '.join(unfit)}.")
    else:
        residuals = epoch_residuals(points, {**given, **trends}[residual_trend], "arch", x, y)
        against, label = f"the {residual_trend} trend", residual_trend
    if residuals.empty:
        drawn.skipped.append("The residual-by-epoch check was skipped: no finite residual.")
        return
    residuals.to_csv(out / "residuals.csv", index=False)
    residual_plot(residuals, out / "residuals.png", trend_label=label)
    spread = ("mean over seeds with +-1 standard-deviation error bars" if (residuals["n"] > 1).any()
              else "one model per point")
    drawn.figures.append(("residuals", f"Residuals of {subject} by fine-tuning epoch", (
        f"OOD {name} of the {subject} group's models minus the prediction of {against} (percentage points), per "
        f"architecture and fine-tuning epoch ({spread}). Values near 0 at every epoch justify using every epoch as a "
        "point (paper Fig. 3).")))


def _natural_split(drawn: Drawn, out: Path, shift, baseline: str, name: str, n_boot: int) -> None:
    """The in-/out-of-support ER of one split natural shift (`analysis.natural_split.SplitFigure`), and its
    most in-/out-of-support images."""
    from analysis.natural_split import natural_split_figure

    stem = f"natural_split_{shift.name}"
    shift.frame().to_csv(out / f"{stem}.csv", index_label="row")
    drawn.files.append(f"{stem}.csv")
    split = shift.split
    if shift.table.empty:
        n_out = int(split.out_of_support.sum())
        drawn.skipped.append(f"The split of {shift.title} has no ER: {len(split.ratio) - n_out} in-support and "
                             f"{n_out} out-of-support images (a part is empty, or so small that every scratch score on "
                             "it is exactly 0 or 1, which no probit trend can fit), or its scratch or pre-trained trials "
                             "are missing.")
        return
    if shift.no_grid:
        drawn.skipped.append(shift.no_grid)
    natural_split_figure(shift.table, split, shift.thumbnails, out / f"{stem}.png", baseline)
    images = (" Right: the shifted images with the lowest (top) and highest (bottom) r." if shift.thumbnails is not None
              else "")
    drawn.figures.append((stem, f"In-support and out-of-support parts of {shift.title}", (
        f"{shift.how} Left: mean ER (pp, {name}) of the pre-trained models on each part against the {baseline} trend "
        f"of that part, with 95% CIs ({n_boot} resamples of the trials).{images}")))
