"""`fractaldb`: FractalDB generated here, after Kataoka et al., "Pre-training without Natural Images"
(ACCV 2020; IJCV 2022), and their reference code (github.com/hirokatsukataoka16/
FractalDB-Pretrained-ResNet-PyTorch: `param_search/ifs_search.py`, `fractal_renderer/`).

What we follow:
- **A class is a random 2D iterated function system** (IFS): N affine maps
  (x, y) -> (a x + b y + e, c x + d y + f), N drawn from 2..8 (the paper's range; the reference
  code's `np.random.randint(2, 8)` stops at 7), the six parameters of every map uniform in
  [-1, 1], and map j chosen with probability |det_j| / sum |det| (|a d - b c|).
- **Filling-rate search**: render the system's point set (chaos game, 100,000 points, rescaled to a
  512 x 512 canvas with a 6-pixel margin, one pixel per point) and keep the system only when at
  least `filling_rate` of the pixels are lit; the reference default and the paper's choice is 0.2.
  Otherwise draw a new system. Each class searches with its own seeded generator, so class k is
  the same for any number of classes and any worker count.
- **Instances** (the paper's intra-category augmentation, reference `weights_0.1.csv`): one of
  25 weight vectors multiplies one parameter (a..f, the same in every map) by 0.8, 0.9, 1.1 or
  1.2 (or leaves all at 1.0); each instance is drawn with *patch* rendering (every point paints a
  random 3x3 binary patch, the paper's best setting) and one of 4 flips (none, vertical,
  horizontal, both). Instance i uses flip i % 4 and weight (i // 4) % 25; its patches come from
  its own seed, so the reference's 25 x 4 x 10 = 1000 instances per class are i = 0..999.
- **Colour**: grey points (127) on black, as the reference's `patch_gray`; `color=True` colours
  each point by its index along the chain (the reference's HSV wheel of 128 hues).

What we change for speed: images are drawn on a canvas of twice the output resolution (at most
512) with the point count scaled to that canvas (at least 4,000), then area-averaged down.
"""
from __future__ import annotations

import colorsys
import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from datasets.storage.beton import cache_root
from datasets.storage.cache_files import cached
from datasets.generators.render import stable_seed
from datasets.sources import SourceError, register_source
from datasets.generators.synthetic import GeneratedSource

SEARCH_CANVAS, SEARCH_POINTS, SEARCH_PAD = 512, 100_000, 6
WEIGHTS = np.ones((25, 6))
for _k, (_param, _w) in enumerate((p, w) for p in range(6) for w in (0.8, 0.9, 1.1, 1.2)):
    WEIGHTS[1 + _k, _param] = _w


@lru_cache(maxsize=None)
def jit(fn):
    """`fn` compiled by numba, imported only when fractals are drawn (keeps `import datasets` light)."""
    from numba import njit

    return njit(cache=True)(fn)


def _chain(params: np.ndarray, cumulative: np.ndarray, uniforms: np.ndarray) -> np.ndarray:
    # One chain from (0, 0), as the reference's `calculate`: point t+1 = map(point t), the map
    # picked by the uniform draw t against the cumulative probabilities.
    points = np.empty((len(uniforms), 2))
    x = y = 0.0
    for t in range(len(uniforms)):
        j = 0
        while j < len(cumulative) - 1 and uniforms[t] > cumulative[j]:
            j += 1
        x, y = (params[j, 0] * x + params[j, 1] * y + params[j, 4],
                params[j, 2] * x + params[j, 3] * y + params[j, 5])
        points[t, 0], points[t, 1] = x, y
        if not (abs(x) < 1e8 and abs(y) < 1e8):  # diverged: the rest of the chain is NaN
            points[t:] = np.nan
            break
    return points


def chaos_game(system: np.ndarray, num_points: int, rng: np.random.Generator) -> np.ndarray:
    """(num_points, 2) points of the IFS `system` (N, 7: a b c d e f p); NaN rows once the chain diverged."""
    with np.errstate(over="ignore", invalid="ignore"):
        points = jit(_chain)(np.ascontiguousarray(system[:, :6]), np.cumsum(system[:, 6]), rng.random(num_points))
        points[~(np.abs(points) < 1e8).all(axis=1)] = np.nan
    return points


def to_pixels(points: np.ndarray, size: int, pad: int) -> np.ndarray:
    """Points rescaled per axis into [pad, size - pad) (as the reference's `__rescale`), int (M, 2) x, y."""
    points = points[np.isfinite(points).all(axis=1)]
    if len(points) == 0:
        return np.zeros((0, 2), dtype=np.int64)
    lo, hi = points.min(axis=0), points.max(axis=0)
    span = np.where(hi - lo > 0, hi - lo, 1.0)
    pixels = (points - lo) / span * (size - 2 * pad - 1) + pad
    return pixels.astype(np.int64)


def _lit_fraction(points: np.ndarray, size: int, pad: int) -> float:
    lo_x, hi_x = points[:, 0].min(), points[:, 0].max()
    lo_y, hi_y = points[:, 1].min(), points[:, 1].max()
    span_x, span_y = max(hi_x - lo_x, 1e-12), max(hi_y - lo_y, 1e-12)
    lit = np.zeros((size, size), dtype=np.bool_)
    for t in range(len(points)):
        px = int((points[t, 0] - lo_x) / span_x * (size - 2 * pad - 1) + pad)
        py = int((points[t, 1] - lo_y) / span_y * (size - 2 * pad - 1) + pad)
        lit[py, px] = True
    return lit.sum() / (size * size)


def filling_rate(system: np.ndarray, seed: int = 0) -> float:
    """Fraction (0..1) of the 512 x 512 search canvas that the system's 100,000 points light.

    A system whose chain diverges has rate 0 (the reference drops the diverged points, which
    leaves a handful of pixels: rejected either way, and this way fast).
    """
    points = chaos_game(system, SEARCH_POINTS, np.random.default_rng(seed))
    if np.isnan(points[-1, 0]):
        return 0.0
    return float(jit(_lit_fraction)(points, SEARCH_CANVAS, SEARCH_PAD))


def search_class(seed: int, k: int, threshold: float) -> np.ndarray:
    """Class k's IFS (N, 7): random systems drawn until one reaches the filling-rate threshold."""
    rng = np.random.default_rng(stable_seed("fractaldb-class", seed, k))
    for _ in range(100_000):
        n = int(rng.integers(2, 9))
        params = rng.uniform(-1.0, 1.0, size=(n, 6))
        det = np.abs(params[:, 0] * params[:, 3] - params[:, 1] * params[:, 2])
        if det.sum() <= 0:
            continue
        system = np.column_stack([params, det / det.sum()])
        if filling_rate(system, seed=k) >= threshold:
            return system
    raise SourceError(f"fractaldb: no system reached filling_rate={threshold} for class {k}; lower filling_rate")


def _search_job(args) -> np.ndarray:
    return search_class(*args)


def render_instance(system: np.ndarray, instance: int, resolution: int, seed: int, color: bool = False) -> np.ndarray:
    """Instance `instance` of a class as (resolution, resolution, 3) uint8 (see the module docstring)."""
    rng = np.random.default_rng(stable_seed("fractaldb-instance", seed, instance, system.tobytes().hex()[:32]))
    weighted = system.copy()
    weighted[:, :6] *= WEIGHTS[(instance // 4) % len(WEIGHTS)]
    canvas = min(2 * resolution, SEARCH_CANVAS)
    num_points = max(4000, int(SEARCH_POINTS * (canvas / SEARCH_CANVAS) ** 2))
    points = chaos_game(weighted, num_points, rng)
    if not np.isfinite(points).any():  # the weight made the system diverge: draw the unweighted one
        points = chaos_game(system, num_points, rng)
    order = np.flatnonzero(np.isfinite(points).all(axis=1))
    pixels = to_pixels(points, canvas, pad=max(1, canvas * SEARCH_PAD // SEARCH_CANVAS))
    if color:
        hues = np.array([colorsys.hsv_to_rgb((i % 128) / 128, 0.75, 0.75) for i in range(128)]) * 255
        values = hues[order % 128]
    else:
        values = np.full((len(pixels), 3), 127.0)
    image = np.zeros((canvas + 2, canvas + 2, 3))
    mask = rng.integers(1, 512, size=len(pixels))  # a random non-empty 3x3 patch per point
    for bit in range(9):
        on = (mask >> bit) & 1 == 1
        dy, dx = divmod(bit, 3)
        image[pixels[on, 1] + dy, pixels[on, 0] + dx] = values[on]
    image = image[1:-1, 1:-1][::-1]  # y up, as the reference draws
    flip = instance % 4
    if flip in (1, 3):
        image = image[::-1]
    if flip in (2, 3):
        image = image[:, ::-1]
    factor = canvas // resolution
    image = image[: resolution * factor, : resolution * factor]
    image = image.reshape(resolution, factor, resolution, factor, 3).mean(axis=(1, 3))
    return np.ascontiguousarray(np.clip(image, 0, 255).astype(np.uint8))


@dataclass
class FractalDB(GeneratedSource):
    """Generated FractalDB: `num_classes` IFS classes, instances as in Kataoka et al."""

    def plan(self, split: str) -> dict[str, np.ndarray]:
        self.check_split(split)
        o = self.options
        per_class = o["images_per_class"] if split == "train" else o["val_per_class"]
        first = 0 if split == "train" else o["images_per_class"]  # val: other instances of the same classes
        return {"label": np.repeat(np.arange(self.num_classes), per_class),
                "instance": np.tile(np.arange(first, first + per_class), self.num_classes)}

    def systems(self, num_workers: int = 1) -> list[np.ndarray]:
        """Every class's IFS, searched in parallel with a progress bar, cached on disk by its parameters."""
        if "_systems" in self.__dict__:
            return self.__dict__["_systems"]
        o = self.options
        key = hashlib.sha256(repr((o["seed"], self.num_classes, o["filling_rate"])).encode()).hexdigest()[:16]
        systems = cached(cache_root() / "fractaldb" / f"systems-{key}.npz", self.generator_version,
                         lambda: search_systems(o["seed"], self.num_classes, o["filling_rate"], num_workers))
        self.__dict__["_systems"] = systems
        return systems

    def render_one(self, split: str, i: int, plan: dict, resolution: int) -> np.ndarray:
        system = self.systems()[plan["label"][i]]
        return render_instance(system, int(plan["instance"][i]), resolution, self.options["seed"], self.options["color"])

    def _write(self, split: str, resolution: int, path: Path, num_workers: int) -> None:
        self.systems(num_workers)  # searched once here, with its own progress bar, before the writer forks
        super()._write(split, resolution, path, num_workers)


def search_systems(seed: int, num_classes: int, threshold: float, num_workers: int = 1) -> list[np.ndarray]:
    """Class systems 0..num_classes-1; the same for any `num_workers` (each class has its own seed)."""
    from tqdm import tqdm

    from datasets.processes import fork_pool

    jobs = [(seed, k, threshold) for k in range(num_classes)]
    desc = f"searching {num_classes} FractalDB classes (filling rate >= {threshold})"
    if num_workers > 1:
        with fork_pool(num_workers) as pool:
            return list(tqdm(pool.imap(_search_job, jobs), total=len(jobs), desc=desc, unit="class"))
    return [search_class(*job) for job in tqdm(jobs, desc=desc, unit="class")]


@register_source("fractaldb")
def fractaldb(data_root=None, num_classes: int = 50, images_per_class: int = 100, val_per_class: int = 10,
              seed: int = 0, resolution: int = 32, filling_rate: float = 0.2, color: bool = False) -> FractalDB:
    """Generated FractalDB (a downloaded FractalDB-1k reads as the `folder` source instead)."""
    del data_root  # generated: --data-root is for the on-disk sources
    if not 0 < filling_rate < 1:
        raise SourceError(f"fractaldb: filling_rate={filling_rate} must be a fraction in (0, 1); the paper uses 0.2")
    options = dict(num_classes=num_classes, images_per_class=images_per_class, val_per_class=val_per_class,
                   seed=seed, filling_rate=filling_rate, color=color)
    return FractalDB(name="fractaldb", options=options, splits=("train", "val"),
                     classes=[f"fractal{k:05d}" for k in range(num_classes)], eval_splits={"val": "val"},
                     native_resolution=resolution)


def sample_grid(num_classes: int = 8, per_class: int = 6, resolution: int = 96, seed: int = 0,
                num_workers: int = 1, color: bool = False) -> np.ndarray:
    """(num_classes * resolution, per_class * resolution, 3) uint8: row = class, column = instance.

    Columns step through instances 0, 4, 8, ... shifted by one each, so a row shows different
    weights and all four flips.
    """
    src = fractaldb(num_classes=num_classes, seed=seed, color=color)
    systems = src.systems(num_workers)
    rows = []
    for k in range(num_classes):
        instances = [(j * 4 + j) % 1000 for j in range(per_class)]
        rows.append(np.concatenate([render_instance(systems[k], i, resolution, seed, color) for i in instances], axis=1))
    grid = np.concatenate(rows, axis=0)
    grid[::resolution] = grid[:, ::resolution] = 255  # thin white separators
    return grid
