"""What the benchmarks share: the headline line, side-by-side rows, realistic JPEG files, Ray isolation.

Every benchmark prints its measurements side by side (ours and the alternative, measured in the same
run) and its headline ratio last: `<name>: <ratio> (goal >= <goal>)` or `(goal <= <goal>)`.
"""
from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402


def headline(name: str, value: float, goal: float, higher_is_better: bool = True) -> bool:
    """Print the benchmark's last line; returns whether the goal holds."""
    op = ">=" if higher_is_better else "<="
    print(f"{name}: {value:.3f} (goal {op} {goal:g})", flush=True)
    return value >= goal if higher_is_better else value <= goal


def side_by_side(label: str, ours: float, theirs: float, unit: str, ours_name: str = "ours",
                 theirs_name: str = "baseline") -> float:
    """Print one measured pair and their ratio (ours / theirs); returns the ratio."""
    ratio = ours / theirs if theirs else float("inf")
    print(f"  {label}: {ours_name} {ours:,.1f} {unit} | {theirs_name} {theirs:,.1f} {unit} | ratio {ratio:.3f}", flush=True)
    return ratio


@contextmanager
def stopwatch() -> Iterator[Callable[[], float]]:
    """`with stopwatch() as elapsed: ...; elapsed()` -> seconds since the block started (frozen at its end)."""
    start, end = time.perf_counter(), []
    yield lambda: (end[0] if end else time.perf_counter()) - start
    end.append(time.perf_counter())


def median(values) -> float:
    return float(statistics.median(values))


def workdir(path: str | None, name: str) -> Path:
    """A folder for generated inputs: `path` (kept, reused by the next run) or a fresh temporary one."""
    if path:
        out = Path(path).expanduser() / name
        out.mkdir(parents=True, exist_ok=True)
        return out
    return Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))


def isolate_ray() -> Path:
    """Give this process's Ray a private temp dir, before Ray is imported.

    `ray.init()` without an address joins the cluster named in `<RAY_TMPDIR>/ray/ray_current_cluster`,
    and `ray.cluster_utils.Cluster` writes its own address there: with the default /tmp, a benchmark
    could join someone else's cluster, or theirs join ours.
    """
    if "ray" in sys.modules:
        raise RuntimeError("isolate_ray() must run before ray is imported")
    import atexit
    import shutil

    tmp = Path(tempfile.mkdtemp(prefix="rb-", dir="/tmp"))  # short: Ray's socket paths must fit 107 bytes
    os.environ["RAY_TMPDIR"] = str(tmp)
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # Tune's classic reporter honours verbose=0: no tables
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)  # Ray's session logs; its processes are gone by then
    return tmp


def _natural_image(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A photo-like RGB image: smooth colour regions, edges and fine texture (JPEG ~0.5 byte/pixel at q90, ~85 KB at 500 x 375)."""
    from PIL import Image

    def layer(cells_y: int, cells_x: int, amplitude: float) -> np.ndarray:
        small = rng.uniform(-amplitude, amplitude, (3, cells_y, cells_x)).astype(np.float32)
        return np.stack([np.asarray(Image.fromarray(c).resize((width, height), Image.BICUBIC)) for c in small], axis=-1)

    image = 128 + layer(4, 5, 90) + layer(24, 32, 35) + layer(height // 4, width // 4, 30)
    image += rng.normal(0, 14, (height, width, 3)).astype(np.float32)  # sensor noise: what JPEG pays for
    return np.clip(image, 0, 255).astype(np.uint8)


# ImageNet's training images: most are 500 px on the longer side (mean about 400 x 350).
IMAGE_SIZES = ((375, 500), (333, 500), (500, 375), (400, 500), (500, 333), (281, 500), (300, 400), (480, 640))


def _write_one(job: tuple) -> None:
    from PIL import Image

    path, seed, quality = job
    rng = np.random.default_rng(seed)
    h, w = IMAGE_SIZES[rng.integers(len(IMAGE_SIZES))]
    Image.fromarray(_natural_image(rng, h, w)).save(path, quality=quality)


def write_jpeg_tree(root: Path, splits: dict[str, int], classes: int, seed: int = 0, quality: int = 90) -> Path:
    """`root/<split>/<class>/<i>.jpg`: `splits[split]` photo-like JPEGs per split at ImageNet-like sizes.

    Written once per parameter set, on every core (a `done.json` marks a finished tree), and reused after.
    """
    from multiprocessing import get_context

    params = {"splits": splits, "classes": classes, "seed": seed, "quality": quality, "version": 1}
    marker = root / "done.json"
    if marker.exists() and json.loads(marker.read_text()) == params:
        return root
    jobs = []
    for s, (split, count) in enumerate(splits.items()):
        for i in range(count):
            folder = root / split / f"class{i % classes:03d}"
            folder.mkdir(parents=True, exist_ok=True)
            jobs.append((folder / f"{i:06d}.jpg", [seed, s, i], quality))
    with get_context("fork").Pool(os.cpu_count() or 1) as pool:
        pool.map(_write_one, jobs, chunksize=16)
    marker.write_text(json.dumps(params))
    return root


def jpeg_tree(path: str | None, images: int, classes: int) -> Path:
    """The benchmarks' shared JPEG dataset: `images` training images over `classes` classes and a val split."""
    root = workdir(path, f"jpegs-{images}-{classes}")
    return write_jpeg_tree(root, {"train": images, "val": max(classes, images // 8)}, classes)
