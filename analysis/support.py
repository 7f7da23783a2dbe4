"""Effective robustness per shift, grouped by whether the shift is in-support or out-of-support
(Cohen-Wang et al.; docs/PROTOCOL.md 5): the `support_shift` sweep's table and bar chart.

Each reference distribution is one fine-tuning target; its trials report each shifted test set as
its own OOD set (`ood_<shift>_*`). `analysis.domain_grid` already measures, per (target, OOD set),
the pre-trained models against that pair's scratch trend, with a 95% CI that resamples trials;
this module names each pair's shift and its support, from the target's options (`p`: the
reference's tint correlation, None for an untinted reference; `shifts`):
- `tint` on a tinted reference (`p` set) is **in-support**: the reference already holds every
  (class, colour) pair, only the correlation changes;
- `tint` on an untinted reference and `flip` on any are **out-of-support**: new kinds of images.
The same rule as `datasets.shifts.transforms.support_of` (the analysis reads files, never the
data package; a test keeps the two equal).

A user's own shift (`shift_folders` target: options `shifted` and `split`, the file written by
`support_shift.py split`) reports its two parts as OOD sets, `ood_in_support_*` and
`ood_out_of_support_*` (`datasets.readers.shift_folders.PARTS`); each is named here by its part.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

SUPPORT_COLUMNS = ["support", "shift", "reference", "target", "group", "baseline", "mean_er", "er_ci_lo",
                   "er_ci_hi", "n_trials"]
KINDS = ("in-support", "out-of-support")


def support_of(shift: str, p: float | None) -> str:
    """'in-support' for a tint shift of a tinted reference, else 'out-of-support'."""
    return "in-support" if shift == "tint" and p is not None else "out-of-support"


# OOD sets of a split shift (`shift_folders`) -> their support
SPLIT_PARTS = {"in_support": "in-support", "out_of_support": "out-of-support"}


def target_options_of(text: object) -> dict:
    """A target's options from their JSON text (`{}` when unreadable)."""
    try:
        options = json.loads(text or "{}")
    except (TypeError, json.JSONDecodeError):
        return {}
    return options if isinstance(options, dict) else {}


def _synthetic_shift(target: str, options: dict, ood_set: str, size: int | None) -> tuple[str, str, str] | None:
    """(support, shift, reference) of a `support_shift` target's shifted set, else None."""
    if "shifts" not in options or "p" not in options or ood_set not in options["shifts"]:
        return None
    p = options["p"]
    return support_of(ood_set, p), ood_set, "untinted" if p is None else f"tint p={p:g}"


def _split_part(target: str, options: dict, ood_set: str, size: int | None) -> tuple[str, str, str] | None:
    """(support, shift, reference) of a part of a user's split shift (`shift_folders`), else None; the shift
    named as the embedded natural parts are, with its image count when known."""
    if "split" not in options or ood_set not in SPLIT_PARTS:
        return None
    kind = SPLIT_PARTS[ood_set]
    count = f", {size} images" if size is not None else ""
    return kind, f"{Path(str(options.get('shifted', target))).name} ({kind} part{count})", f"natural: {target}"


# how each kind of target names its OOD sets in the support table: the first that knows the set wins
SHIFT_NAMERS = (_synthetic_shift, _split_part)


def support_table(grid: pd.DataFrame, points: pd.DataFrame, sizes: dict[tuple[str, str], int] | None = None
                  ) -> pd.DataFrame:
    """``SUPPORT_COLUMNS``: the rows of ``grid`` (``analysis.domain_grid.domain_er_grid``) whose target
    is a shifted reference distribution or a user's split shift, each named by its shift and support
    (``SHIFT_NAMERS``; `sizes`: the images of (target, OOD set) where known); empty otherwise.
    In-support rows first (by p), then out-of-support ones."""
    if grid.empty or "target_options" not in points.columns:
        return pd.DataFrame(columns=SUPPORT_COLUMNS)
    options = points.groupby("target")["target_options"].first().map(target_options_of).to_dict()
    records = []
    for _, row in grid.iterrows():
        opts = options.get(row["target"], {})
        size = (sizes or {}).get((str(row["target"]), row["ood_domain"]))
        named = next((n for n in (f(str(row["target"]), opts, row["ood_domain"], size) for f in SHIFT_NAMERS) if n),
                     None)
        if named is None:
            continue
        support, shift, reference = named
        records.append({"support": support, "shift": shift, "reference": reference, "target": row["target"],
                        **{k: row[k] for k in ("group", "baseline", "mean_er", "er_ci_lo", "er_ci_hi", "n_trials")}})
    table = pd.DataFrame.from_records(records, columns=SUPPORT_COLUMNS)
    if table.empty:
        return table
    order = table["support"].map(KINDS.index) * 10 + table["shift"].map(lambda s: 0 if s == "tint" else 1)
    return table.assign(_o=order).sort_values(["_o", "reference"]).drop(columns="_o").reset_index(drop=True)


def by_support(table: pd.DataFrame) -> pd.DataFrame:
    """`table` with its in-support rows first, each group in its given order."""
    order = table["support"].map(KINDS.index)
    return table.iloc[np.argsort(order.to_numpy(), kind="stable")].reset_index(drop=True)


def support_lines(table: pd.DataFrame) -> list[str]:
    """One line per shift: `in-support  tint p=0.7 -> tint: ER -1.2 pp [-2.0, -0.3] (4 trials)`."""
    lines = []
    for _, r in table.iterrows():
        ci = (f"[{100 * r['er_ci_lo']:+.1f}, {100 * r['er_ci_hi']:+.1f}]"
              if np.isfinite(r["er_ci_lo"]) and np.isfinite(r["er_ci_hi"]) else "[no CI]")
        lines.append(f"{r['support']:<14} {r['reference']} -> {r['shift']}: ER {100 * r['mean_er']:+.1f} pp {ci} "
                     f"({int(r['n_trials'])} trial{'s' if r['n_trials'] != 1 else ''})")
    return lines


def support_bar_plot(table: pd.DataFrame, out_path: Path, baseline: str = "scratch") -> Path:
    """Bars of mean ER (pp) with 95% CIs, one per shift, grouped in-support | out-of-support; PNG and PDF."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    import textwrap

    colours = {"in-support": "#4c72b0", "out-of-support": "#dd8452"}
    table = by_support(table)  # bars, ticks and values in one order: in-support, then out-of-support
    x, ticks, positions = 0.0, [], []
    for kind in KINDS:
        for _, r in table[table["support"] == kind].iterrows():
            positions.append(x)
            ticks.append("\n".join(textwrap.wrap(f"{r['reference']} -> {r['shift']}", 16)))
            x += 1
        x += 0.8  # a gap between the two groups
    m = 100 * table["mean_er"].to_numpy(float)
    lo, hi = 100 * table["er_ci_lo"].to_numpy(float), 100 * table["er_ci_hi"].to_numpy(float)
    err = np.vstack([np.where(np.isfinite(lo), m - lo, 0), np.where(np.isfinite(hi), hi - m, 0)])
    fig = Figure(figsize=(max(3.5, 0.9 * len(table) + 1.5), 3.6), dpi=200)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.bar(positions, m, yerr=err, capsize=3, color=[colours[s] for s in table["support"]])
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(positions)
    ax.set_xticklabels(ticks, fontsize=6)
    ax.set_ylabel(f"ER vs {baseline} (pp)", fontsize=8)
    ax.legend(handles=[Patch(color=colour, label=kind) for kind, colour in colours.items()], fontsize=7,
              frameon=False)
    fig.tight_layout()
    png = Path(out_path).with_suffix(".png")
    fig.savefig(png)
    fig.savefig(png.with_suffix(".pdf"))
    return png
