"""Groups of points: their labels, their display order and their colour (one of each, everywhere).

Labels are ``scratch``, ``full`` and ``<intervention>=<value>``. Every plot takes its colours
from ``group_colors``, so a group has the same colour in the scatter, the ER bars and the HTML.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import pandas as pd

SCRATCH_COLOR = "tab:blue"  # the papers' from-scratch line
FULL_COLOR = "tab:cyan"  # the papers' full-ImageNet line
BASELINE_COLOR = SCRATCH_COLOR  # kept for callers of the first version
# Names drawn in the papers' full-ImageNet cyan: the "full" group and published ImageNet lines.
FULL_NAMES = frozenset({"full", "imagenet"})


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
    """Groups as strings in display order: the baseline, scratch, full, then ``group_sort_key``."""
    rank = {str(baseline): 0, "scratch": 1, "full": 2}
    return sorted({str(g) for g in groups}, key=lambda g: (rank.get(g, 3), group_sort_key(g)))


def _palette() -> list:
    from matplotlib import colormaps

    # tab10 without its blue (0) and cyan (9), then tab20's light shades without blue and cyan.
    colors = [c for i, c in enumerate(colormaps["tab10"].colors) if i not in (0, 9)]
    colors += [c for i, c in enumerate(colormaps["tab20"].colors) if i % 2 and i not in (1, 19)]
    return colors


def group_colors(groups: Iterable, baseline: str = "scratch") -> dict:
    """A fixed colour per group, the same in every plot when given the same groups.

    ``scratch`` is blue and ``full`` / ``imagenet`` cyan, as in the papers; a baseline with
    another name is blue when there is no ``scratch`` group; the rest take a fixed palette
    (tab10 then tab20, blues and cyans left out) in ``group_sort_key`` order. Pass every group
    of a report at once (points' groups and file baselines) so the mapping is shared.
    """
    names = list(dict.fromkeys(groups))
    strs = {str(g) for g in names}
    palette, colors, k = _palette(), {}, 0
    for g in sorted(names, key=group_sort_key):
        s = str(g)
        if s == "scratch" or (s == str(baseline) and "scratch" not in strs and s not in FULL_NAMES):
            colors[g] = SCRATCH_COLOR
        elif s in FULL_NAMES:
            colors[g] = FULL_COLOR
        else:
            colors[g] = palette[k % len(palette)]
            k += 1
    return colors


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))
