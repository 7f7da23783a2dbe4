"""The axis transforms of trend fits and plots, and their inverses (one shared pair).

Scores are fractions in [0, 1]. ``probit`` is Miller et al.'s ``norm.ppf``, ``logit`` is Taori
et al.'s; ``linear`` leaves scores unchanged. 0 and 1 map to -inf/+inf under probit and logit.
"""

from __future__ import annotations

import numpy as np
from scipy import special

TRANSFORMS = ("probit", "logit", "linear")


def check_transform(name: str) -> str:
    """Return ``name`` if it is a known transform, else raise a one-line ValueError."""
    if name not in TRANSFORMS:
        raise ValueError(f"unknown transform {name!r}; choose one of {', '.join(TRANSFORMS)}")
    return name


def transform(scores: np.ndarray, name: str = "probit") -> np.ndarray:
    """Map scores (fractions) to the axis of ``name``; 0 and 1 become +-inf for probit/logit."""
    check_transform(name)
    x = np.asarray(scores, dtype=float)
    with np.errstate(divide="ignore"):
        if name == "probit":
            return special.ndtri(x)  # what scipy.stats.norm.ppf computes, lighter to import
        if name == "logit":
            return special.logit(x)
    return x.copy()


def inverse(values: np.ndarray, name: str = "probit") -> np.ndarray:
    """Map transformed values back to scores (fractions)."""
    check_transform(name)
    y = np.asarray(values, dtype=float)
    if name == "probit":
        return special.ndtr(y)  # scipy.stats.norm.cdf
    if name == "logit":
        return special.expit(y)
    return y.copy()
