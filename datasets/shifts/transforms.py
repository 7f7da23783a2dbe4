"""The synthetic shifts of Cohen-Wang et al. (docs/PROTOCOL.md 5) as pure, seeded functions.

- **Class colours**: one fixed colour per class, drawn once from the seed (evenly spaced hues in a
  seeded random order, so no two classes share a tint).
- **Tint draw** (`tint_colours`): per image, the index of the colour it is tinted with. With a
  correlation `p`, an image takes its own class's colour with probability `p`, else one drawn
  uniformly from the *other* classes' colours, so the colour predicts the label with probability
  exactly `p`. With `p=None` the colour is drawn uniformly from all classes' colours, independent
  of the label (agreement 1/num_classes).
- **Shifts** (`SHIFTS`): `tint` (the uncorrelated tint) and `flip` (upside down). A shift is
  in-support for a reference that already holds its kind of image (`tint` on a tinted reference),
  out-of-support otherwise.

Every draw is a function of (seed, split, example index) only: the same image gets the same tint
in every process and on every run.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from datasets.generators.render import hsv_to_rgb, stable_seed
from datasets.sources import SourceError

ALPHA = 0.25  # tint opacity (the paper's reference value)


class ShiftError(SourceError):
    """A bad shift name or parameter; one line naming the valid choices (a `SourceError`: before Ray starts)."""


def class_colours(num_classes: int, seed: int) -> np.ndarray:
    """(num_classes, 3) RGB in [0, 1]: class k's tint colour."""
    rng = np.random.default_rng(stable_seed("tint-colours", seed))
    hues = (rng.permutation(num_classes) + rng.uniform(0, 1)) / num_classes
    return hsv_to_rgb(hues % 1.0, 1.0, 0.9)


def tint_colours(labels: np.ndarray, num_classes: int, p: float | None, seed: int, split: str) -> np.ndarray:
    """Per example, the class whose colour tints it (int64, same length as `labels`).

    `p` in (0, 1): own class with probability p, else uniform over the other classes; `p=None`:
    uniform over all classes, independent of the label.
    """
    labels = np.asarray(labels, dtype=np.int64)
    rng = np.random.default_rng(stable_seed("tint-draw", seed, split))
    if p is None:
        return rng.integers(0, num_classes, size=len(labels))
    check_p(p)
    own = rng.random(len(labels)) < p
    other = (labels + 1 + rng.integers(0, num_classes - 1, size=len(labels))) % num_classes
    return np.where(own, labels, other)


def check_p(p: float) -> None:
    if not (isinstance(p, (int, float)) and 0 < p < 1):
        raise ShiftError(f"support_shift: p={p!r} is not a probability in (0, 1); use e.g. 0.5 ... 0.9")


def tint(image: np.ndarray, colour: np.ndarray, alpha: float = ALPHA) -> np.ndarray:
    """`image` (H, W, 3) uint8 blended with `colour` (RGB in [0, 1]) at opacity `alpha`."""
    out = (1 - alpha) * image.astype(np.float32) + alpha * 255.0 * np.asarray(colour, np.float32)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def flip(image: np.ndarray) -> np.ndarray:
    """`image` upside down (a vertical flip: the rows reversed)."""
    return np.ascontiguousarray(image[::-1])


@dataclass(frozen=True)
class Shift:
    """A shifted test set: how one image is transformed, and whether it needs a tint draw."""

    transform: Callable[..., np.ndarray]
    tinted: bool = False
    description: str = ""


SHIFTS: dict[str, Shift] = {
    "tint": Shift(tint, tinted=True, description="tinted with a colour drawn independently of the label"),
    "flip": Shift(flip, description="vertically flipped (upside down)"),
}


def check_shifts(shifts) -> tuple[str, ...]:
    """`shifts` as a tuple of registered names, or a ShiftError naming the unknown one."""
    shifts = (shifts,) if isinstance(shifts, str) else tuple(shifts)
    if not shifts:
        raise ShiftError(f"support_shift: no shifted test set; choose from {', '.join(SHIFTS)}")
    for name in shifts:
        if name not in SHIFTS:
            raise ShiftError(f"support_shift: unknown shift '{name}'; shifts: {', '.join(SHIFTS)}")
    return shifts


def support_of(shift: str, p: float | None) -> str:
    """'in-support' when the reference (tinted with correlation `p`, or untinted when None) already
    holds the shifted set's kind of image, else 'out-of-support'."""
    return "in-support" if shift == "tint" and p is not None else "out-of-support"
