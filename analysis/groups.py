"""Groups of points: their labels, their display order and their colour (one of each, everywhere).

The default group of a trial is (target when the points have several, pre-training source,
intervention, value), labelled ``scratch``, ``imagenet/full`` or ``imagenet/quantity=25000``;
with several targets ``domainnet-sketch: scratch``. Two sources never share a trend, and each
source has its own ``full`` baseline. When one (source, intervention, value) was run with
different intervention parameters (e.g. ``classes`` at two budgets) the label adds them:
``imagenet/classes=250 (budget=300000)``. Every plot takes its colours from ``group_colors``, so a
group has the same colour in the scatter, the ER bars and the HTML.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable

import pandas as pd

SCRATCH_COLOR = "tab:blue"  # the papers' from-scratch line
FULL_COLOR = "tab:cyan"  # the papers' full-ImageNet line
FULL_COLORS = (FULL_COLOR, "darkcyan", "cadetblue", "lightseagreen")  # further sources' full baselines
BASELINE_COLOR = SCRATCH_COLOR  # kept for callers of the first version
TARGET_SEPARATOR = ": "


def group_label(intervention: object, value: object, source: object = None, params: object = None) -> str:
    """``scratch``, or ``<source>/<intervention>[=<value>][ (<params>)]`` (no source part when None).

    Integral numbers print as ints; ``params`` is a dict or its JSON text.
    """
    if intervention == "scratch":
        return "scratch"
    text = str(intervention)
    if not _missing(value):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        text += f"={value}"
    if isinstance(params, str):
        params = json.loads(params or "{}")
    if params:
        text += " (" + ", ".join(f"{k}={v}" for k, v in sorted(params.items())) + ")"
    return text if _missing(source) or source == "none" else f"{source}/{text}"


def split_target(label: str) -> tuple[str | None, str]:
    """(target, rest) of a label; target None when the label has no target prefix."""
    target, sep, rest = str(label).partition(TARGET_SEPARATOR)
    return (target, rest) if sep else (None, str(label))


def with_target(target: str | None, label: str) -> str:
    return label if target is None else f"{target}{TARGET_SEPARATOR}{label}"


def default_labels(df: pd.DataFrame) -> pd.Series:
    """The default group label of every row of ``df`` (config columns: see the module docstring)."""
    if "intervention" not in df.columns:
        raise ValueError("the trials have no 'intervention' key to group by; pass --group-by COL")
    n = len(df)
    col = lambda name: df[name] if name in df.columns else pd.Series([None] * n, index=df.index)  # noqa: E731
    source, value, params, target = col("source"), col("value"), col("intervention_params"), col("target")
    keys = pd.DataFrame({"s": source.astype(str), "i": df["intervention"].astype(str),
                         "v": value.map(lambda v: json.dumps(v, default=str)), "p": params.fillna("{}").astype(str)})
    varying = keys.groupby(["s", "i", "v"])["p"].transform("nunique") > 1  # params tell these groups apart
    several = target.nunique(dropna=True) > 1
    labels = [
        with_target(t if several else None,
                    group_label(i, v, s, p if vary else None))
        for i, v, s, p, t, vary in zip(df["intervention"], value, source, params, target, varying, strict=True)
    ]
    return pd.Series(labels, index=df.index, dtype=object)


def add_group_column(df: pd.DataFrame, by: str | Iterable[str] | None = None) -> pd.DataFrame:
    """A copy of ``df`` with a ``group`` column: the default labels, or the values of ``by``.

    ``by`` is a column name or several (``"arch,source"`` or a list): the label joins the
    columns' values with "/". A ``group`` column already present is kept.
    """
    if by is None or by == "group":
        if "group" in df.columns:
            return df.copy()
        out = df.copy()
        out["group"] = default_labels(df)
        return out
    columns = [c.strip() for c in by.split(",")] if isinstance(by, str) else list(by)
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"no column {missing[0]!r} to group by; choose from: {', '.join(map(str, df.columns))}")
    out = df.copy()
    out["group"] = ["/".join(_label(v) for v in values) for values in zip(*(df[c] for c in columns))]
    return out


def is_scratch(label: object) -> bool:
    return split_target(str(label))[1] == "scratch"


def is_full(label: object) -> bool:
    rest = split_target(str(label))[1]
    return rest in ("full", "imagenet") or rest.endswith("/full")


def group_sort_key(label: object) -> tuple:
    """Sort "x/quantity=5000" before "x/quantity=25000": by prefix, then numeric value, then text."""
    text = str(label)
    prefix, _, rest = text.partition("=")
    match = re.match(r"[-+]?\d*\.?\d+(e[-+]?\d+)?", rest)
    number = float(match.group()) if match else (-math.inf if not rest else math.inf)
    return (prefix, number, text)


def ordered_groups(groups: Iterable, baseline: str = "scratch") -> list[str]:
    """Groups as strings in display order: per target, the baseline, scratch, full, then the rest."""
    def rank(label: str) -> tuple:
        target, rest = split_target(label)
        kind = 0 if rest == str(baseline) else 1 if rest == "scratch" else 2 if is_full(rest) else 3
        return (target or "", kind, group_sort_key(rest))

    return sorted({str(g) for g in groups}, key=rank)


def _palette() -> list:
    from matplotlib import colormaps

    # tab10 without its blue (0) and cyan (9), then tab20's light shades without blue and cyan.
    colors = [c for i, c in enumerate(colormaps["tab10"].colors) if i not in (0, 9)]
    colors += [c for i, c in enumerate(colormaps["tab20"].colors) if i % 2 and i not in (1, 19)]
    return colors


def group_colors(groups: Iterable, baseline: str = "scratch") -> dict:
    """A fixed colour per group, the same in every plot when given the same groups.

    ``scratch`` groups are blue and ``full`` ones (and a given baseline named ``imagenet``) cyan
    (further sources' ``full`` in darker cyans), as in the papers; a baseline with another name is
    blue when there is no ``scratch`` group; the rest take a fixed palette (tab10 then tab20,
    blues and cyans left out) in ``group_sort_key`` order, the same colour for the same label
    under every target. Pass every group of a report at once so the mapping is shared.
    """
    names = list(dict.fromkeys(groups))
    plain = {split_target(str(g))[1] for g in names}
    palette, fulls, colors, others = _palette(), {}, {}, {}
    for g in sorted(names, key=lambda x: group_sort_key(split_target(str(x))[1])):
        rest = split_target(str(g))[1]
        if rest == "scratch" or (rest == str(baseline) and "scratch" not in plain and not is_full(rest)):
            colors[g] = SCRATCH_COLOR
        elif is_full(rest):
            # ImageNet's (or an unnamed) full line is the papers' cyan; other sources' take darker cyans
            source = "imagenet" if rest in ("full", "imagenet") else rest.rsplit("/", 1)[0]
            if "imagenet" in {"imagenet" if r in ("full", "imagenet") else r.rsplit("/", 1)[0]
                              for r in plain if is_full(r)} and source != "imagenet":
                fulls.setdefault("imagenet", FULL_COLOR)
            fulls.setdefault(source, FULL_COLORS[len(fulls) % len(FULL_COLORS)])
            colors[g] = fulls[source]
        else:
            others.setdefault(rest, palette[len(others) % len(palette)])
            colors[g] = others[rest]
    return colors


def _label(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))
