"""The papers' ID-vs-OOD scatter: transformed axes labelled in percent, one colour per group.

Uses matplotlib's object API with the Agg canvas (no pyplot, no global backend switch), so it
is safe to call from servers and tests. Scores in the input are fractions; axes show percent.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps, ticker
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

# Aliased: scatter_plot takes a parameter named ``transform``.
from analysis.transforms import check_transform
from analysis.transforms import inverse as _inverse
from analysis.transforms import transform as _transform
from analysis.trends import Trend

BASELINE_COLOR = "tab:blue"  # the papers' from-scratch line
FULL_COLOR = "tab:cyan"  # the papers' full-ImageNet line
_TICKS_PERCENT = (
    0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 98, 99, 99.5, 99.8, 99.9
)
_TICKS_PREFERRED = (0.1, 1, 2, 5, 10, 20, 30, 50, 70, 90, 95, 99, 99.9)
Band = tuple[np.ndarray, np.ndarray, np.ndarray]


def group_sort_key(label: object) -> tuple:
    """Sort "quantity=5000" before "quantity=25000": by prefix, then numeric value, then text."""
    text = str(label)
    prefix, _, rest = text.partition("=")
    try:
        number = float(rest) if rest else -math.inf
    except ValueError:
        number = math.inf
    return (prefix, number, text)


def ordered_groups(groups: Iterable, baseline: str = "scratch") -> list[str]:
    """Groups as strings in display order: the baseline, then "full", then ``group_sort_key``."""
    rank = {str(baseline): 0, "full": 1}
    return sorted({str(g) for g in groups}, key=lambda g: (rank.get(g, 2), group_sort_key(g)))


def group_colors(groups: list, baseline: str = "scratch") -> dict:
    """A fixed colour per group: the baseline blue, "full" cyan, the rest from tab10/tab20."""
    palette = [c for i, c in enumerate(colormaps["tab10"].colors) if i not in (0, 9)]
    # then the light shades of tab20, again without the blues and cyans
    palette += [c for i, c in enumerate(colormaps["tab20"].colors) if i % 2 and i not in (1, 19)]
    colors, k = {}, 0
    for g in sorted(groups, key=group_sort_key):
        if str(g) == str(baseline):
            colors[g] = BASELINE_COLOR
        elif str(g) == "full":
            colors[g] = FULL_COLOR
        else:
            colors[g] = palette[k % len(palette)]
            k += 1
    return colors


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
) -> Path:
    """Scatter of OOD vs ID macro-F1 per group with fitted trends; writes PNG and PDF.

    Args:
        points_df: one row per point with ``id_f1``, ``ood_f1`` (fractions) and ``group_col``.
        trends: group -> fitted Trend (drawn across the plot); groups without one get points only.
        out_path: the PNG path; the PDF goes next to it with a ``.pdf`` suffix.
        bands: optional group -> (grid, lo, hi) from ``bootstrap_band``, drawn as shaded bands.
    Returns:
        The PNG path.
    """
    check_transform(transform)
    png = Path(out_path).with_suffix(".png")
    png.parent.mkdir(parents=True, exist_ok=True)
    tx = _t(points_df["id_f1"], transform)
    ty = _t(points_df["ood_f1"], transform)
    ok = np.isfinite(tx) & np.isfinite(ty)
    if not ok.any():
        raise ValueError("no point with finite transformed ID and OOD scores to plot")
    xlim, ylim = _limits(tx[ok]), _limits(ty[ok])
    groups = ordered_groups(points_df.loc[ok, group_col].astype(str).unique(), baseline)
    colors = group_colors(groups + [g for g in trends if g not in groups], baseline)

    fig = Figure(figsize=(3.4, 2.8), dpi=200)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    diag = np.array([min(xlim[0], ylim[0]), max(xlim[1], ylim[1])])
    ax.plot(diag, diag, ls="--", lw=0.8, color="0.25", zorder=1)
    labels = points_df[group_col].astype(str).to_numpy()
    xs = np.linspace(*xlim, 200)
    for g in groups:
        color, mask = colors[g], ok & (labels == g)
        if bands and g in bands:
            grid, lo, hi = bands[g]
            ax.fill_between(
                _t(grid, transform), _t(lo, transform),
                _t(hi, transform), color=color, alpha=0.15, lw=0, zorder=2,
            )
        ax.scatter(tx[mask], ty[mask], s=9, color=color, alpha=0.85, lw=0, zorder=3, label=g)
        if g in trends:
            t = trends[g]
            lw = 1.6 if g == baseline else 1.1
            ax.plot(xs, t.intercept + t.slope * xs, color=color, lw=lw, zorder=4)
    ax.set_xlim(xlim)
    ax.set_ylim(ylim)
    for axis, lim in ((ax.xaxis, xlim), (ax.yaxis, ylim)):
        pos, text = percent_ticks(lim[0], lim[1], transform)
        axis.set_major_locator(ticker.FixedLocator(pos))
        axis.set_major_formatter(ticker.FixedFormatter(text))
        axis.set_minor_locator(ticker.NullLocator())
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.25, lw=0.5)
    ax.set_xlabel("ID macro-F1 (%)", fontsize=8)
    ax.set_ylabel("OOD macro-F1 (%)", fontsize=8)
    if title:
        ax.set_title(title, fontsize=8)
    handles, names = ax.get_legend_handles_labels()
    handles.append(Line2D([], [], ls="--", lw=0.8, color="0.25"))
    names.append("y = x")
    ncol = 1 + len(names) // 16
    ax.legend(
        handles, names, loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=7, frameon=False,
        ncol=ncol, handletextpad=0.3, borderaxespad=0.0, markerscale=1.5,
    )
    fig.savefig(png, bbox_inches="tight")
    fig.savefig(png.with_suffix(".pdf"), bbox_inches="tight")
    return png


def _t(scores: object, name: str) -> np.ndarray:
    return _transform(np.asarray(scores, dtype=float), name)


def _limits(values: np.ndarray) -> tuple[float, float]:
    lo, hi = float(values.min()), float(values.max())
    pad = max(0.06 * (hi - lo), 0.05)
    return lo - pad, hi + pad
