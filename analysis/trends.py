"""Linear trends of OOD on ID scores in transformed space, effective robustness, bootstrap bands.

Conventions of the reference code (docs/PROTOCOL.md 1): OLS of transformed OOD on transformed ID
(as ``scipy.stats.linregress``), probit by default; points with a score of exactly 0 or 1 are
dropped from fits with a warning under probit/logit. Scores and ER are fractions.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

# Aliased: the public functions take a parameter named ``transform``.
from analysis.transforms import check_transform
from analysis.transforms import inverse as _inverse
from analysis.transforms import transform as _transform

# Bootstrap resamples are processed in chunks of at most this many (resample x point) entries.
_BOOT_CHUNK = 1 << 22


@dataclass(frozen=True)
class Trend:
    """A fitted line ``T(ood) = intercept + slope * T(id)`` with T the transform.

    ``r2`` is the squared Pearson correlation in transformed space; ``n`` the number of points
    used in the fit.
    """

    slope: float
    intercept: float
    r2: float
    n: int
    transform: str = "probit"

    def predict(self, id_scores: ArrayLike) -> np.ndarray:
        """OOD scores (fractions) the trend predicts from ID scores (fractions)."""
        tx = _transform(id_scores, self.transform)
        with np.errstate(invalid="ignore"):
            return _inverse(self.intercept + self.slope * tx, self.transform)


def usable_points(
    id_scores: ArrayLike, ood_scores: ArrayLike, transform_name: str = "probit"
) -> tuple[np.ndarray, np.ndarray]:
    """Transformed (x, y) of the points a fit can use; warns how many were dropped and why.

    Raises ValueError for scores outside [0, 1] (percent passed by mistake) or mismatched shapes.
    """
    check_transform(transform_name)
    x = np.asarray(id_scores, dtype=float).reshape(-1)
    y = np.asarray(ood_scores, dtype=float).reshape(-1)
    if x.shape != y.shape:
        raise ValueError(f"id_scores and ood_scores differ in length: {x.size} vs {y.size}")
    finite = np.isfinite(x) & np.isfinite(y)
    if np.any((x[finite] < 0) | (x[finite] > 1) | (y[finite] < 0) | (y[finite] > 1)):
        worst = float(np.nanmax(np.abs(np.concatenate([x[finite], y[finite]]))))
        raise ValueError(
            f"scores must be fractions in [0, 1]; got a value of {worst:g} (divide percent by 100)"
        )
    keep = finite
    if transform_name != "linear":
        edge = finite & ((x == 0) | (x == 1) | (y == 0) | (y == 1))
        if edge.any():
            warnings.warn(
                f"dropped {int(edge.sum())} of {x.size} points with a score of exactly 0 or 1: "
                f"{transform_name} maps them to infinity",
                stacklevel=3,
            )
        keep = finite & ~edge
    if (~finite).any():
        n_nan = int((~finite).sum())
        warnings.warn(f"dropped {n_nan} points with a missing (NaN) score", stacklevel=3)
    return _transform(x[keep], transform_name), _transform(y[keep], transform_name)


def fit_trend(id_scores: ArrayLike, ood_scores: ArrayLike, transform: str = "probit") -> Trend:
    """OLS fit of transformed OOD on transformed ID scores (fractions); see module docstring.

    Raises ValueError with fewer than 2 usable points or when all ID scores are equal.
    """
    tx, ty = usable_points(id_scores, ood_scores, transform)
    if tx.size < 2:
        raise ValueError(f"a trend needs at least 2 usable points; got {tx.size}")
    if np.all(tx == tx[0]):
        raise ValueError("a trend needs at least 2 distinct ID scores; all are equal")
    from scipy import (
        stats,  # imported here: scipy.stats is slow to import, and only fits need it
    )

    res = stats.linregress(tx, ty)
    return Trend(
        slope=float(res.slope),
        intercept=float(res.intercept),
        r2=float(res.rvalue**2),
        n=int(tx.size),
        transform=transform,
    )


def effective_robustness(trend: Trend, id_scores: ArrayLike, ood_scores: ArrayLike) -> np.ndarray:
    """OOD score minus the OOD score ``trend`` predicts from the ID score (fractions)."""
    return np.asarray(ood_scores, dtype=float) - trend.predict(id_scores)


def bootstrap_band(
    id_scores: ArrayLike,
    ood_scores: ArrayLike,
    transform: str = "probit",
    n_boot: int = 1000,
    seed: int = 0,
    grid: ArrayLike | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pointwise 95% bootstrap band of the trend line, in metric space (fractions).

    Resamples the points with replacement ``n_boot`` times, refits OLS on each resample (all at
    once with numpy), and takes the 2.5 and 97.5 percentiles of the predicted OOD score at each
    ID score of ``grid`` (default: 100 points spanning the usable ID scores). Resamples whose ID
    scores are all equal have no slope and are left out. Reproducible for a given ``seed``.

    Returns:
        (grid, lo, hi), each of shape (len(grid),).
    """
    tx, ty = usable_points(id_scores, ood_scores, transform)
    if tx.size < 2:
        raise ValueError(f"a bootstrap band needs at least 2 usable points; got {tx.size}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1; got {n_boot}")
    if grid is None:
        lo_id, hi_id = _inverse(np.array([tx.min(), tx.max()]), transform)
        grid = np.linspace(lo_id, hi_id, 100)
    grid = np.asarray(grid, dtype=float).reshape(-1)
    tgrid = _finite_transform(grid, transform)

    rng = np.random.default_rng(seed)
    idx = rng.integers(0, tx.size, size=(n_boot, tx.size))
    slopes = np.empty(n_boot)
    intercepts = np.empty(n_boot)
    step = max(1, _BOOT_CHUNK // tx.size)
    for start in range(0, n_boot, step):
        xs, ys = tx[idx[start : start + step]], ty[idx[start : start + step]]
        mx, my = xs.mean(axis=1, keepdims=True), ys.mean(axis=1, keepdims=True)
        sxx = ((xs - mx) ** 2).sum(axis=1)
        sxy = ((xs - mx) * (ys - my)).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            b = np.where(sxx > 0, sxy / sxx, np.nan)
        slopes[start : start + step] = b
        intercepts[start : start + step] = my[:, 0] - b * mx[:, 0]
    ok = np.isfinite(slopes)
    if not ok.any():
        raise ValueError("every bootstrap resample had equal ID scores; need more distinct points")
    pred = intercepts[ok, None] + slopes[ok, None] * tgrid[None, :]
    lo, hi = np.percentile(pred, [2.5, 97.5], axis=0)
    # Percentiles commute with the monotone inverse transform, so take them in fit space.
    return grid, _inverse(lo, transform), _inverse(hi, transform)


def _finite_transform(scores: np.ndarray, name: str) -> np.ndarray:
    """Transform, clipping 0 and 1 just inside so grid ends stay finite."""
    if name == "linear":
        return _transform(scores, name)
    eps = 1e-9
    return _transform(np.clip(scores, eps, 1 - eps), name)


def bootstrap_mean_ci(
    values: ArrayLike, n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of ``values`` (same units as ``values``).

    Resamples the values with replacement ``n_boot`` times (one numpy call, no loop) and
    returns the ``(1-level)/2`` and ``(1+level)/2`` percentiles of the resampled means. NaNs
    are ignored; with no value the CI is (nan, nan), with one it is that value twice.
    Reproducible for a given ``seed``.
    """
    v = np.asarray(values, dtype=float).reshape(-1)
    v = v[np.isfinite(v)]
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1; got {n_boot}")
    if v.size == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    step = max(1, _BOOT_CHUNK // v.size)
    for start in range(0, n_boot, step):
        stop = min(n_boot, start + step)
        means[start:stop] = v[rng.integers(0, v.size, size=(stop - start, v.size))].mean(axis=1)
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(means, [tail, 100 - tail])
    return (float(lo), float(hi))


def bootstrap_cluster_mean_ci(
    values: ArrayLike, clusters: ArrayLike, n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of ``values``, resampling whole clusters (trials).

    A trial's fine-tuning epochs are not independent points, so the resampling unit is the trial:
    each resample draws as many clusters as there are, with replacement, and takes the mean of
    every value of the drawn clusters (a cluster drawn twice counts twice). NaN values are left
    out. With no finite value the CI is (nan, nan); with one cluster it is that cluster's mean
    twice. Vectorised through per-cluster sums and counts; reproducible for a given ``seed``.
    """
    v = np.asarray(values, dtype=float).reshape(-1)
    c = np.asarray(clusters).reshape(-1)
    if v.shape != c.shape:
        raise ValueError(f"values ({v.size}) and clusters ({c.size}) differ in length")
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1; got {n_boot}")
    ok = np.isfinite(v)
    if not ok.any():
        return (float("nan"), float("nan"))
    _, ids = np.unique(c[ok], return_inverse=True)
    sums = np.bincount(ids, weights=v[ok])
    counts = np.bincount(ids).astype(float)
    k = sums.size
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, k, size=(n_boot, k))
    means = sums[draws].sum(axis=1) / counts[draws].sum(axis=1)
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(means, [tail, 100 - tail])
    return (float(lo), float(hi))
