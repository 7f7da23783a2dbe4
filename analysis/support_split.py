"""Splitting a natural shift into its in-support and out-of-support parts (Cohen-Wang et al.;
docs/PROTOCOL.md 5), from features written to files by the engine (`analysis` reads only files).

1. A domain classifier (standardised features, logistic regression) tells reference (0) from
   shifted (1) examples; every example gets an out-of-fold logit from 10-fold stratified cross-
   validation, so no example is scored by a model that saw it.
2. One temperature T, fitted by minimising the log loss of sigmoid(logit / T) over the out-of-fold
   logits, calibrates them: p = P(shifted | x).
3. The density ratio of a shifted example is r = p / (1 - p) * n_ref / n_shift, an estimate of
   p_shift(x) / p_ref(x); it is out-of-support when r >= 1 / epsilon (epsilon = 0.1 by default),
   in-support otherwise.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import expit, log_expit

EPSILON = 0.1
FOLDS = 10


@dataclass(frozen=True)
class ShiftSplit:
    """The split of the shifted examples (arrays over them, in their file order)."""

    out_of_support: np.ndarray  # bool
    ratio: np.ndarray           # density ratio r
    probability: np.ndarray     # calibrated P(shifted | x)
    temperature: float
    epsilon: float

    @property
    def out_fraction(self) -> float:
        return float(self.out_of_support.mean())


def out_of_fold_logits(features: np.ndarray, domain: np.ndarray, folds: int = FOLDS, seed: int = 0,
                       C: float = 1.0) -> np.ndarray:
    """Out-of-fold decision values (logits of P(domain = 1)) of a standardised logistic regression."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000))
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return cross_val_predict(model, features, domain, cv=cv, method="decision_function")


def log_loss(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean binary cross-entropy of sigmoid(logits / temperature) against `labels` (0/1)."""
    z = np.asarray(logits, float) / temperature
    return float(-np.mean(np.where(labels == 1, log_expit(z), log_expit(-z))))


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The one temperature T > 0 minimising `log_loss(logits, labels, T)` (searched over log T)."""
    result = minimize_scalar(lambda log_t: log_loss(logits, labels, float(np.exp(log_t))), bounds=(-5, 5),
                             method="bounded")
    return float(np.exp(result.x))


def split_shift(reference: np.ndarray, shifted: np.ndarray, epsilon: float = EPSILON, folds: int = FOLDS,
                seed: int = 0) -> ShiftSplit:
    """Split the `shifted` examples (features, (n_shift, d)) against the `reference` ones ((n_ref, d))."""
    if not 0 < epsilon < 1:
        raise ValueError(f"epsilon={epsilon!r} must be in (0, 1); the paper uses 0.1")
    features = np.concatenate([reference, shifted]).astype(np.float64)
    domain = np.r_[np.zeros(len(reference), int), np.ones(len(shifted), int)]
    logits = out_of_fold_logits(features, domain, folds, seed)
    temperature = fit_temperature(logits, domain)
    p = expit(logits[len(reference):] / temperature)
    ratio = p / np.clip(1 - p, 1e-12, None) * len(reference) / len(shifted)
    return ShiftSplit(out_of_support=ratio >= 1 / epsilon, ratio=ratio, probability=p, temperature=temperature,
                      epsilon=epsilon)
