"""Evaluation metrics, in one place: the engine evaluates with these, analysis reads them back.

``macro_f1`` is the WILDS iWildCam metric (docs/PROTOCOL.md 2): F1 averaged over the classes
present in ``y_true``, computed once over a whole split. Results are fractions in [0, 1].
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


def _check_labels(y_true: ArrayLike, y_pred: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    t, p = np.asarray(y_true), np.asarray(y_pred)
    if t.ndim != 1 or p.ndim != 1:
        raise ValueError(
            f"labels must be 1-D arrays of class ids; got shapes {t.shape} and {p.shape} "
            "(take argmax over logits first)"
        )
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred differ in length: {t.shape[0]} vs {p.shape[0]}")
    if t.size == 0:
        raise ValueError("macro_f1/accuracy of an empty split is undefined: y_true has no labels")
    return t, p


def _codes(t: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Dense non-negative codes for the labels of both arrays, and how many codes there are."""
    if t.dtype.kind in "iub" and p.dtype.kind in "iub":
        lo = min(int(t.min()), int(p.min()))
        hi = max(int(t.max()), int(p.max()))
        # Small integer labels (the usual case) count directly; no sort needed.
        if hi - lo < 4 * (t.size + p.size) + 1024:
            return t.astype(np.int64) - lo, p.astype(np.int64) - lo, hi - lo + 1
    _, inv = np.unique(np.concatenate([t, p]), return_inverse=True)
    inv = inv.reshape(-1)
    return inv[: t.size], inv[t.size :], int(inv.max()) + 1


def macro_f1(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Macro F1 over the classes present in ``y_true`` (WILDS), as a fraction in [0, 1].

    Equals ``sklearn.metrics.f1_score(y_true, y_pred, average="macro",
    labels=np.unique(y_true), zero_division=0)``. A predicted class that never occurs in
    ``y_true`` is not averaged over; its predictions only lower the recall of the true classes.
    A true class that is never predicted scores F1 = 0.

    Args:
        y_true: shape (n,), true class ids of the whole split.
        y_pred: shape (n,), predicted class ids.
    """
    t, p = _check_labels(y_true, y_pred)
    t, p, k = _codes(t, p)
    true_count = np.bincount(t, minlength=k)
    pred_count = np.bincount(p, minlength=k)
    tp = np.bincount(t[t == p], minlength=k)
    present = true_count > 0
    # F1 = 2PR/(P+R) = 2tp/(2tp+fp+fn) = 2tp/(pred+true); 0 when tp == 0 (zero_division=0).
    f1 = 2.0 * tp[present] / (pred_count[present] + true_count[present])
    return float(f1.mean())


def accuracy(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Fraction of examples whose predicted class equals the true class."""
    t, p = _check_labels(y_true, y_pred)
    return float(np.mean(t == p))
