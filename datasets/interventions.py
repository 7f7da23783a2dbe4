"""Interventions on a pre-training source: index lists and label maps over its train split.

An intervention never copies images: it picks rows of the source's train `.beton` and maps
their labels. Each is one registered function; `build_subset` looks it up by name.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from datasets.sources import Source


class InterventionError(ValueError):
    """An impossible or unknown intervention; the message is one line that says the fix."""


@dataclass
class Subset:
    """Rows of the source's train split and the label each gets."""

    indices: np.ndarray          # rows of the train split (sorted)
    labels: np.ndarray           # new label of each chosen row, 0..num_classes-1
    num_classes: int
    label_map: np.ndarray        # source class -> new label, -1 where the class is unused
    description: dict = field(default_factory=dict)


INTERVENTIONS: dict[str, Callable[..., Subset]] = {}


def register_intervention(name: str) -> Callable:
    """Decorator: register `f(src, value, seed, **params) -> Subset` under `name`."""

    def wrap(fn: Callable[..., Subset]) -> Callable[..., Subset]:
        INTERVENTIONS[name] = fn
        return fn

    return wrap


def build_subset(src: Source, intervention: str, value=None, seed: int = 0, **params) -> Subset:
    """The subset of `src`'s train split that `intervention` at `value` selects (deterministic by seed)."""
    if intervention not in INTERVENTIONS:
        raise InterventionError(
            f"unknown intervention '{intervention}'; known: {', '.join(sorted(INTERVENTIONS))}"
        )
    subset = INTERVENTIONS[intervention](src, value, seed, **params)
    subset.description = {
        "source": src.name,
        "intervention": intervention,
        "value": value,
        "seed": seed,
        "num_images": int(len(subset.indices)),
        "num_classes": int(subset.num_classes),
        "images_per_class": np.bincount(subset.labels, minlength=subset.num_classes).tolist(),
        **subset.description,
    }
    return subset


def subset_from_rows(labels: np.ndarray, rows: np.ndarray, label_map: np.ndarray, **description) -> Subset:
    rows = np.sort(rows)
    new = label_map[labels[rows]]
    return Subset(rows, new, int(label_map.max()) + 1, label_map, dict(description))


@register_intervention("full")
def full(src: Source, value, seed: int) -> Subset:
    """The whole train split with its own labels."""
    labels = src.labels("train")
    return subset_from_rows(labels, np.arange(len(labels)), np.arange(src.num_classes))


@register_intervention("quantity")
def quantity(src: Source, value: int, seed: int, num_classes: int | None = None) -> Subset:
    """A class-balanced random subset of `value` images.

    Every class gets `value // C` images; when `value` does not divide evenly, the remaining
    `value % C` images go one each to randomly chosen classes (seeded), so class sizes differ by
    at most one. `num_classes` restricts the subset to the most frequent classes (ties broken by
    class order), as the paper does for iNaturalist (its 1000 most frequent species).
    """
    labels = src.labels("train")
    counts = np.bincount(labels, minlength=src.num_classes)
    classes = np.arange(src.num_classes)
    if num_classes is not None:
        if not 0 < num_classes <= src.num_classes:
            raise InterventionError(
                f"quantity: num_classes={num_classes} but source '{src.name}' has {src.num_classes} classes"
            )
        classes = np.sort(np.argsort(-counts, kind="stable")[:num_classes])
    if not isinstance(value, (int, np.integer)) or value < len(classes):
        raise InterventionError(
            f"quantity: value={value!r} must be an integer of at least one image per class ({len(classes)})"
        )
    rng = np.random.default_rng(seed)
    per_class = np.full(len(classes), value // len(classes))
    per_class[rng.choice(len(classes), size=value % len(classes), replace=False)] += 1
    short = np.flatnonzero(counts[classes] < per_class)
    if len(short):
        c = classes[short[0]]
        raise InterventionError(
            f"quantity: {value} class-balanced images need {per_class[short[0]]} per class but class "
            f"'{src.classes[c]}' of source '{src.name}' has {counts[c]} ({len(labels)} train images in all); "
            f"choose a size of at most {int(counts[classes].min()) * len(classes)}"
        )
    rows = np.concatenate([
        rng.choice(np.flatnonzero(labels == c), size=k, replace=False) for c, k in zip(classes, per_class)
    ])
    label_map = np.full(src.num_classes, -1)
    label_map[classes] = np.arange(len(classes))
    return subset_from_rows(labels, rows, label_map)
