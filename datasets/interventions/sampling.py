"""Sampling helpers shared by the interventions: rows grouped by class, balanced counts, draws.

Sampling works on rows grouped by class once (`class_rows`, one stable argsort), so a subset
of ImageNet's 1.28 M rows takes well under a second.
"""
from __future__ import annotations

import numpy as np

from datasets.interventions.core import InterventionError, Subset
from datasets.sources import Source


def subset_from_rows(labels: np.ndarray, rows: np.ndarray, label_map: np.ndarray, **description) -> Subset:
    rows = np.sort(rows)
    new = label_map[labels[rows]]
    return Subset(rows, new, int(label_map.max()) + 1, label_map, dict(description))


def class_rows(labels: np.ndarray, num_classes: int, rows: np.ndarray | None = None) -> list[np.ndarray]:
    """Per class, its rows (ascending): of the whole split, or only of `rows` (e.g. one domain)."""
    rows = np.arange(len(labels)) if rows is None else np.sort(rows)
    sub = labels[rows]
    order = rows[np.argsort(sub, kind="stable")]
    return np.split(order, np.cumsum(np.bincount(sub, minlength=num_classes))[:-1])


def spread(total: int, parts: int, rng: np.random.Generator) -> np.ndarray:
    """`total` split over `parts` as evenly as possible: `total % parts` random parts get one more."""
    per = np.full(parts, total // parts)
    per[rng.choice(parts, size=total % parts, replace=False)] += 1
    return per


def fill_balanced(counts: np.ndarray, total: int, rng: np.random.Generator) -> np.ndarray:
    """Class-balanced counts summing to `total`, none above `counts` (water-filling).

    Every class gets min(count, t) for the largest level t that fits; the few images left
    go one each to random classes that still have more. Needs total <= counts.sum().
    """
    lo, hi = 0, int(counts.max())
    while lo < hi:  # largest t with sum(min(counts, t)) <= total
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if np.minimum(counts, mid).sum() <= total else (lo, mid - 1)
    per = np.minimum(counts, lo)
    room = np.flatnonzero(counts > lo)
    per[rng.choice(room, size=total - int(per.sum()), replace=False)] += 1
    return per


def draw(groups: list[np.ndarray], classes, per_class, rng: np.random.Generator, replace=False) -> np.ndarray:
    """`per_class[i]` random rows of class `classes[i]` (with replacement where `replace[i]`)."""
    replace = np.broadcast_to(replace, len(per_class))
    picks = [rng.choice(groups[c], size=int(k), replace=bool(r)) for c, k, r in zip(classes, per_class, replace)]
    return np.concatenate(picks) if picks else np.zeros(0, dtype=np.int64)


def _count(value, what: str, example: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InterventionError(f"{what}={value!r} must be an integer >= {minimum}, e.g. {example}")
    return int(value)


def wnid_source(src: Source, intervention: str) -> tuple[str, ...]:
    """The classes of an ImageNet-like source (all wnids), or a one-line error saying why not."""
    from datasets.hierarchy import is_wnid

    bad = [c for c in src.classes if not is_wnid(c)]
    if bad or not src.classes:
        raise InterventionError(
            f"{intervention}: source '{src.name}' is not ImageNet-like (class {bad[0] if bad else None!r} is not a "
            f"WordNet id like n01440764); {intervention} needs WordNet classes"
            + ("" if src.supercategories is None else " or, for iNaturalist, its supercategories")
        )
    return tuple(src.classes)
