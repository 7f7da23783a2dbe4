"""The intervention registry and `build_subset`: an intervention is one registered function.

An intervention never copies images: it picks rows of the source's train `.beton` and maps
their labels. `build_subset` looks one up by name and completes its description.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from datasets.sources import Source


class InterventionError(ValueError):
    """An impossible or unknown intervention; the message is one line that says the fix."""


class InsufficientData(InterventionError):
    """The source holds too few images for this value (e.g. a budget some drawn class cannot fill).

    A sweep drops such a grid entry with a printed line; a single `build_subset` call raises it.
    """


@dataclass
class Subset:
    """Rows of the source's train split and the label each gets."""

    indices: np.ndarray          # rows of the train split (sorted; repeats only when sampled with replacement)
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
    """The subset of `src`'s train split that `intervention` at `value` selects (deterministic by seed).

    The description holds what a report shows: sizes, the new classes (label order), images
    per new class, whether rows repeat, plus the intervention's own facts.
    """
    if intervention not in INTERVENTIONS:
        raise InterventionError(
            f"unknown intervention '{intervention}'; known: {', '.join(sorted(INTERVENTIONS))}"
        )
    try:
        subset = INTERVENTIONS[intervention](src, value, seed, **params)
    except TypeError as e:  # an unknown keyword: say which intervention and what it takes
        if "unexpected keyword argument" not in str(e):
            raise
        raise InterventionError(f"{intervention}: {e}; see datasets/README.md for its parameters") from None
    own = subset.description
    replaced = bool(own.pop("with_replacement", False))
    if not replaced and np.any(np.diff(subset.indices) == 0):  # indices are sorted
        raise AssertionError(f"{intervention} repeated rows without saying it samples with replacement")
    if "classes" not in own:  # one source class per new label: name the labels by those classes
        used = np.flatnonzero(subset.label_map >= 0)
        own["classes"] = [src.classes[c] for c in used[np.argsort(subset.label_map[used], kind="stable")]]
    subset.description = {
        "source": src.name,
        "intervention": intervention,
        "value": value,
        "seed": seed,
        "params": dict(params),
        "num_images": len(subset.indices),
        "num_classes": int(subset.num_classes),
        "images_per_class": np.bincount(subset.labels, minlength=subset.num_classes).tolist(),
        "with_replacement": replaced,
        **own,
    }
    return subset

