"""The report's figures, sized for one paper column (3.3 in) and saved as PNG and PDF.

- ``scatter_plot``: OOD vs ID score (macro-F1 or accuracy) on probit (or logit/linear) axes
  labelled in percent, y = x, each group's points with its fitted line and shaded 95% bootstrap
  band, baselines from a file drawn as lines alone; one panel per pre-training source (or
  target) when there are several, each with the baselines.
- ``residual_plot``: residual (percentage points) against fine-tuning epoch, one line per
  architecture (paper Fig. 3).
- ``er_bar_plot``: mean effective robustness per group (percentage points) with 95% CIs.
- ``er_heatmap``: ID domain x OOD domain grid of effective robustness (DomainNet).

Colours come from ``analysis.groups.group_colors``, so a group looks the same in every figure.
Uses matplotlib's object API with the Agg canvas (no pyplot, no global backend switch), so it is
safe from servers and tests. Inputs are fractions; axes show percent / percentage points.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps, ticker
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

# Re-exported: callers of the first version import these from here.
from analysis.groups import (
    BASELINE_COLOR,
    FULL_COLOR,
    SCRATCH_COLOR,
    group_colors,
    group_sort_key,
    ordered_groups,
)

# Aliased: scatter_plot takes a parameter named ``transform``.
from analysis.transforms import check_transform
from analysis.transforms import inverse as _inverse
from analysis.transforms import transform as _transform
from analysis.trends import Trend

__all__ = [
    "BASELINE_COLOR", "FULL_COLOR", "SCRATCH_COLOR", "er_bar_plot", "er_heatmap", "group_colors",
    "group_sort_key", "ordered_groups", "percent_ticks", "residual_plot", "scatter_plot",
]
COLUMN_WIDTH_IN = 3.3
FONT = {"label": 8, "tick": 7, "legend": 6.5}
_TICKS_PERCENT = (
    0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 98, 99, 99.5, 99.8, 99.9
)
_TICKS_PREFERRED = (0.1, 1, 2, 5, 10, 20, 30, 50, 70, 90, 95, 99, 99.9)
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "h")
Band = tuple[np.ndarray, np.ndarray, np.ndarray]


def percent_ticks(lo: float, hi: float, transform_name: str) -> tuple[np.ndarray, list[str]]:
    """Tick positions in transformed space between ``lo`` and ``hi``, with percent labels."""
    lo_pct, hi_pct = 100 * _inverse(np.array([lo, hi]), transform_name)
    cands = [p for p in _TICKS_PERCENT if lo_pct <= p <= hi_pct]
    if len(cands) > 8:
        cands = [p for p in cands if p in _TICKS_PREFERRED]
    if len(cands) > 8:
        cands = cands[::2]
    if len(cands) < 3 or transform_name == "linear":
        # Narrow range (or linear axes): evenly spaced round percentages.
        vals = ticker.MaxNLocator(nbins=5, steps=[1, 2, 2.5, 5, 10]).tick_values(lo_pct, hi_pct)
        cands = [float(v) for v in vals if lo_pct <= v <= hi_pct]
        if transform_name != "linear":
            cands = [v for v in cands if 0 < v < 100]  # 0% and 100% lie at infinity
    pos = _transform(np.array(cands, dtype=float) / 100, transform_name)
    return pos, [f"{p:g}" for p in cands]


def scatter_plot(
    points_df: pd.DataFrame,
    trends: Mapping[str, Trend],
    out_path: str | Path,
    transform: str = "probit",
    group_col: str = "group",
    baseline: str = "scratch",
    bands: Mapping[str, Band] | None = None,
    title: str | None = None,
    colors: Mapping[str, object] | None = None,
    file_trends: Mapping[str, Trend] | None = None,
    x: str = "id_f1",
    y: str = "ood_f1",
    axis_names: tuple[str, str] = ("ID macro-F1", "OOD macro-F1"),
    panels: Sequence[tuple[str, Sequence[str]]] | None = None,
    flagged: Collection[str] = (),
) -> Path:
    """Scatter of OOD vs ID scores per group with fitted trends, one panel or several; PNG and PDF.

    Args:
        points_df: one row per point with ``x``, ``y`` (fractions) and ``group_col``.
        trends: group -> fitted Trend; baseline (scratch) and ``full`` lines span the axes, the
            others stay over their own ID range; groups without one get points only.
        out_path: the PNG path; the PDF goes next to it with a ``.pdf`` suffix.
        bands: optional group -> (grid, lo, hi) from ``bootstrap_band``, drawn as shaded bands.
        colors: group -> colour (``group_colors`` of every group by default).
        file_trends: name -> Trend given as parameters (``analysis.baselines``), drawn as a
            dash-dot line with no points and no band in every panel; the legend says "(given)".
        axis_names: what ``x`` and ``y`` are, for the axis labels.
        panels: (title, groups) per panel, side by side with shared axes (e.g. one per
            pre-training source, each with the baselines); default one panel with every group.
        flagged: groups whose fit rests on few trials: "(few trials)" in the legend.
    Returns:
        The PNG path.
    """
    check_transform(transform)
    png = _png_path(out_path)
    file_trends = dict(file_trends or {})
    tx = _t(points_df[x], transform)
    ty = _t(points_df[y], transform)
    ok = np.isfinite(tx) & np.isfinite(ty)
    if not ok.any():
        raise ValueError("no point with finite transformed ID and OOD scores to plot")
    xlim, ylim = _limits(tx[ok]), _limits(ty[ok])
    groups = ordered_groups(points_df.loc[ok, group_col].astype(str).unique(), baseline)
    if colors is None:
        colors = group_colors(groups + [g for g in [*trends, *file_trends] if g not in groups],
                              baseline)
    from analysis.groups import split_target

    panels = list(panels) if panels else [(title or "", groups)]
    ncols = min(3, len(panels))
    nrows = -(-len(panels) // ncols)
    # Each panel's legend sits below it: leave room for the longest one between the rows.
    legend_rows = max(len(shown) + len(file_trends) + 1 for _, shown in panels)
    legend_in = 0.13 * legend_rows + 0.3
    fig = Figure(figsize=(COLUMN_WIDTH_IN * ncols, nrows * (2.9 + legend_in)), dpi=300)
    FigureCanvasAgg(fig)
    if nrows > 1:
        fig.subplots_adjust(hspace=(legend_in + 0.6) / 2.9)
    labels = points_df[group_col].astype(str).to_numpy()
    for k, (panel_title, shown) in enumerate(panels):
        ax = fig.add_subplot(nrows, ncols, k + 1)
        _style(ax)
        shown = [g for g in ordered_groups(shown, baseline) if g in groups or g in trends]
        handles, names = _scatter_panel(ax, tx, ty, ok, labels, shown, trends, file_trends, bands, colors,
                                        baseline, transform, xlim, ylim, flagged)
        if len(panels) > 1 and {split_target(g)[0] for g in shown} == {panel_title}:
            names = [split_target(n)[1] for n in names]  # the panel's title already names the target
        scale = "" if transform == "linear" else f", {transform} scale"
        ax.set_xlabel(f"{axis_names[0]} (%{scale})", fontsize=FONT["label"])
        ax.set_ylabel(f"{axis_names[1]} (%{scale})", fontsize=FONT["label"])
        _legend(ax, handles, names)
        if panel_title and len(panels) > 1:
            ax.set_title(panel_title, fontsize=FONT["label"])
    if title and len(panels) > 1:
        fig.suptitle(title, fontsize=FONT["label"])
    elif title:
        fig.axes[0].set_title(title, fontsize=FONT["label"])
    _save(fig, png)
    return png


def _scatter_panel(ax, tx, ty, ok, labels, groups, trends, file_trends, bands, colors, baseline, transform,
                   xlim, ylim, flagged) -> tuple[list, list]:
    from analysis.groups import is_full, is_scratch, split_target

    diag = np.array([min(xlim[0], ylim[0]), max(xlim[1], ylim[1])])
    ax.plot(diag, diag, ls="--", lw=0.7, color="0.35", zorder=1)
    xs = np.linspace(*xlim, 200)
    alpha = 0.8 if ok.sum() <= 300 else 0.55  # crowded plots: let overlapping points show
    handles, names = [], []
    for g in groups:
        color, mask = colors[g], ok & (labels == g)
        spans = is_scratch(g) or is_full(g) or split_target(g)[1] == str(baseline)
        if bands and g in bands:
            grid, lo, hi = bands[g]
            ax.fill_between(
                _t(grid, transform), _t(lo, transform), _t(hi, transform),
                color=color, alpha=0.18, lw=0, zorder=2,
            )
        ax.scatter(tx[mask], ty[mask], s=7, color=color, alpha=alpha, lw=0, zorder=3)
        lw = 1.5 if spans else 1.0
        if g in trends:
            # Baseline trends span the axes, as the papers draw them; the other groups' lines
            # stay over their own ID range (with their bands) instead of extrapolating.
            gx = xs if spans or not mask.any() else np.linspace(tx[mask].min(), tx[mask].max(), 100)
            ax.plot(gx, _line(trends[g], gx, transform), color=color, lw=lw, zorder=4)
        handles.append(Line2D([], [], color=color, lw=lw if g in trends else 0, marker="o",
                              ms=3, mew=0))
        names.append(g + (" (few trials)" if g in flagged else ""))
    for name, t in file_trends.items():
        color = colors.get(name, "0.2")
        ax.plot(xs, _line(t, xs, transform), color=color, lw=1.5, ls="-.", zorder=4)
        handles.append(Line2D([], [], color=color, lw=1.5, ls="-."))
        names.append(f"{name} (given)")
    handles.append(Line2D([], [], ls="--", lw=0.7, color="0.35"))
    names.append("y = x")
    ax.set_xlim(xlim)
    ax.set_ylim(ylim)
    for axis, lim in ((ax.xaxis, xlim), (ax.yaxis, ylim)):
        pos, text = percent_ticks(lim[0], lim[1], transform)
        axis.set_major_locator(ticker.FixedLocator(pos))
        axis.set_major_formatter(ticker.FixedFormatter(text))
        axis.set_minor_locator(ticker.NullLocator())
    return handles, names


def er_heatmap(table: pd.DataFrame, out_path: str | Path, baseline: str = "scratch",
               title: str | None = None) -> Path:
    """ID domain (rows) x OOD domain (columns) heat map of mean effective robustness; PNG and PDF.

    Args:
        table: rows = ID domains (targets), columns = OOD domains, values = mean ER (fractions)
            of the pre-trained models against the ``baseline`` trend of that (ID, OOD) pair; NaN
            where the pair does not exist (a domain is not its own OOD set). Drawn in percentage
            points with a diverging colour map centred on 0 and each value written in its cell.
    Returns:
        The PNG path.
    """
    png = _png_path(out_path)
    values = 100 * table.to_numpy(dtype=float)
    finite = values[np.isfinite(values)]
    if not finite.size:
        raise ValueError("no (ID, OOD) domain pair has an effective robustness to draw")
    lim = max(1.0, float(np.abs(finite).max()))
    fig = Figure(figsize=(COLUMN_WIDTH_IN, 0.9 + 0.42 * len(table)), dpi=300)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    image = ax.imshow(np.ma.masked_invalid(values), cmap="RdBu", vmin=-lim, vmax=lim, aspect="auto")
    for (i, j), v in np.ndenumerate(values):
        if np.isfinite(v):
            ax.text(j, i, f"{v:+.1f}", ha="center", va="center", fontsize=FONT["tick"],
                    color="white" if abs(v) > 0.6 * lim else "black")
    ax.set_xticks(range(table.shape[1]))
    ax.set_xticklabels(table.columns, rotation=30, ha="right", fontsize=FONT["tick"])
    ax.set_yticks(range(table.shape[0]))
    ax.set_yticklabels(table.index, fontsize=FONT["tick"])
    ax.set_xlabel("OOD domain", fontsize=FONT["label"])
    ax.set_ylabel("ID domain (fine-tuned on)", fontsize=FONT["label"])
    bar = fig.colorbar(image, ax=ax, fraction=0.05, pad=0.03)
    bar.set_label(f"ER vs {baseline} (pp)", fontsize=FONT["tick"])
    bar.ax.tick_params(labelsize=FONT["tick"])
    if title:
        ax.set_title(title, fontsize=FONT["label"])
    _save(fig, png)
    return png


def residual_plot(
    residuals: pd.DataFrame,
    out_path: str | Path,
    trend_label: str = "full",
    by_label: str = "architecture",
    title: str | None = None,
) -> Path:
    """Residual vs fine-tuning epoch, one line per architecture; writes PNG and PDF.

    Args:
        residuals: ``analysis.residuals.epoch_residuals`` output (fractions): columns ``arch``,
            ``epoch``, ``mean``, ``std``, ``n``. Drawn in percentage points: the mean as a line
            with markers, +-1 standard deviation as error bars where ``n > 1`` (then lines are
            shifted slightly along x so the bars stay apart).
        trend_label: name of the trend the residuals are taken against (for the axis label).
        by_label: what the lines are (legend title).
    Returns:
        The PNG path.
    """
    if residuals.empty:
        raise ValueError("no residuals to plot (no finite point against the baseline trend)")
    png = _png_path(out_path)
    fig, ax = _figure(2.2)
    ax.axhline(0, color="0.35", lw=0.7, ls="--", zorder=1)
    archs = sorted(residuals["arch"].astype(str).unique())
    arch_colors = colormaps["Dark2"].colors
    spread = bool((residuals["n"] > 1).any()) and len(archs) > 1
    handles, names = [], []
    for i, arch in enumerate(archs):
        sub = residuals[residuals["arch"].astype(str) == arch].sort_values("epoch")
        color, marker = arch_colors[i % len(arch_colors)], _MARKERS[i % len(_MARKERS)]
        # Lines side by side within an epoch, so their error bars do not hide each other.
        dodge = 0.1 * (i - (len(archs) - 1) / 2) if spread else 0.0
        x = sub["epoch"].to_numpy(float) + dodge
        m, sd = 100 * sub["mean"].to_numpy(float), 100 * sub["std"].to_numpy(float)
        ax.plot(x, m, color=color, lw=1.0, marker=marker, ms=3.5, mew=0, zorder=3)
        if (sub["n"] > 1).any():
            ax.errorbar(x, m, yerr=sd, fmt="none", ecolor=color, elinewidth=0.6, alpha=0.7,
                        capsize=0, zorder=2)
        handles.append(Line2D([], [], color=color, lw=1.0, marker=marker, ms=3.5, mew=0))
        names.append(arch)
    epochs = np.sort(residuals["epoch"].unique())
    ax.xaxis.set_major_locator(ticker.MaxNLocator(nbins=min(12, len(epochs)), integer=True))
    pad = 0.4
    ax.set_xlim(float(epochs.min()) - pad, float(epochs.max()) + pad)
    lim = max(1.0, float(np.nanmax(np.abs(
        100 * np.concatenate([residuals["mean"] - residuals["std"],
                              residuals["mean"] + residuals["std"]]))))) * 1.15
    ax.set_ylim(-lim, lim)  # symmetric about 0: the check is whether residuals hover around it
    ax.set_xlabel("fine-tuning epoch", fontsize=FONT["label"])
    ax.set_ylabel(f"OOD residual vs {trend_label} (pp)", fontsize=FONT["label"])
    _finish(fig, ax, handles, names, title, png, legend_title=by_label)
    return png


def er_bar_plot(
    summary: pd.DataFrame,
    out_path: str | Path,
    colors: Mapping[str, object] | None = None,
    baseline: str = "scratch",
    title: str | None = None,
    flagged: Collection[str] = (),
) -> Path:
    """Horizontal bars of each group's mean ER with its 95% CI; writes PNG and PDF.

    Args:
        summary: ``analysis.summary.summarize_groups`` output (fractions): ``group``,
            ``mean_er``, ``er_ci_lo``, ``er_ci_hi``; rows without a finite ``mean_er`` (file
            baselines, groups without scores) are skipped. Drawn in percentage points; the
            baseline's own bar sits at about 0 and is hatched.
        colors: group -> colour (``group_colors`` of the rows by default).
    Returns:
        The PNG path.
    """
    rows = summary[np.isfinite(summary["mean_er"].astype(float))]
    if rows.empty:
        raise ValueError("no group has a mean ER to plot (no baseline trend?)")
    png = _png_path(out_path)
    groups = [str(g) for g in rows["group"]]
    if colors is None:
        colors = group_colors(groups, baseline)
    height = 0.9 + 0.2 * len(groups)
    fig, ax = _figure(height)
    y = np.arange(len(groups))[::-1]  # first group on top
    m = 100 * rows["mean_er"].to_numpy(float)
    lo = 100 * rows["er_ci_lo"].to_numpy(float)
    hi = 100 * rows["er_ci_hi"].to_numpy(float)
    err = np.vstack([np.clip(m - lo, 0, None), np.clip(hi - m, 0, None)])
    bar_colors = [colors.get(g, "0.5") for g in groups]
    bars = ax.barh(y, m, height=0.7, color=bar_colors, edgecolor="0.2", lw=0.4, zorder=2)
    from analysis.groups import split_target

    for bar, g in zip(bars, groups, strict=True):
        if split_target(g)[1] == baseline:
            bar.set_hatch("////")
            bar.set_alpha(0.6)
    ax.errorbar(m, y, xerr=err, fmt="none", ecolor="0.1", elinewidth=0.8, capsize=2, zorder=3)
    ax.axvline(0, color="0.35", lw=0.7, zorder=1)
    ax.set_yticks(y)
    ax.set_yticklabels([g + (" (few trials)" if g in flagged else "") for g in groups])
    ax.set_ylim(-0.6, len(groups) - 0.4)
    span = np.nanmax(np.abs(np.concatenate([lo, hi, m])))
    ax.set_xlim(min(0, np.nanmin(lo)) - 0.08 * span, max(0, np.nanmax(hi)) + 0.08 * span)
    ax.set_xlabel(f"mean effective robustness vs {baseline} (pp)", fontsize=FONT["label"])
    ax.grid(axis="y", visible=False)
    _finish(fig, ax, [], [], title, png)
    return png


# --- shared layout ---------------------------------------------------------------------------


def _figure(axes_height_in: float) -> tuple[Figure, object]:
    fig = Figure(figsize=(COLUMN_WIDTH_IN, axes_height_in), dpi=300)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    _style(ax)
    return fig, ax


def _style(ax: object) -> None:
    ax.tick_params(labelsize=FONT["tick"], length=2.5, pad=2)
    ax.grid(alpha=0.25, lw=0.5)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def _legend(ax: object, handles: list, names: list, legend_title: str | None = None) -> None:
    """Legend below the axes, never over the data."""
    if not handles:
        return
    longest = max(len(n) for n in names)
    ncol = 3 if longest <= 14 else 2 if longest <= 24 else 1
    leg = ax.legend(
        handles, names, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=ncol,
        fontsize=FONT["legend"], frameon=False, handlelength=2.4, handletextpad=0.4,
        columnspacing=1.0, borderaxespad=0.0, title=legend_title,
        title_fontsize=FONT["legend"],
    )
    leg._legend_box.align = "left"


def _save(fig: Figure, png: Path) -> None:
    fig.savefig(png, bbox_inches="tight", pad_inches=0.02)
    fig.savefig(png.with_suffix(".pdf"), bbox_inches="tight", pad_inches=0.02)


def _finish(
    fig: Figure, ax: object, handles: list, names: list, title: str | None, png: Path,
    legend_title: str | None = None,
) -> None:
    """Legend below the axes, title, and both files."""
    if title:
        ax.set_title(title, fontsize=FONT["label"])
    _legend(ax, handles, names, legend_title)
    _save(fig, png)


def _png_path(out_path: str | Path) -> Path:
    png = Path(out_path).with_suffix(".png")
    png.parent.mkdir(parents=True, exist_ok=True)
    return png


def _line(trend: Trend, xs: np.ndarray, plot_transform: str) -> np.ndarray:
    """A trend across plot-space x positions, in plot space (the trend may use another
    transform, e.g. a published probit line on logit axes)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return _t(trend.predict(_inverse(xs, plot_transform)), plot_transform)


def _t(scores: object, name: str) -> np.ndarray:
    return _transform(np.asarray(scores, dtype=float), name)


def _limits(values: np.ndarray) -> tuple[float, float]:
    lo, hi = float(values.min()), float(values.max())
    pad = max(0.06 * (hi - lo), 0.05)
    return lo - pad, hi + pad
