"""`.beton` conversion throughput of `python -m datasets prepare` vs a plain PIL resize loop, and cache reuse.

Both convert the same photo-like JPEGs (ImageNet-like sizes, train and val splits) on every core:
- ours: `python -m datasets prepare folder` into an empty cache: scan, and write each split's
  `.beton` (JPEG quality 90, longer side <= 512 px), finding unreadable images in the same decode
  (no split was checked before, so the conversion is the check);
- plain: a `multiprocessing.Pool` over the same files, each opened with PIL, resized to a longer
  side <= 512 px and saved as a JPEG of quality 90: what one would script to shrink a dataset.
Conversion throughput is per image: FFCV's import (with torch, which it imports: ~2 s, once per
command) is done before the timing, as the PIL loop's imports are, and printed apart with the ratio
it would give if counted. Each side runs `--repeats` times, alternating, each run after `os.sync()`
and with the previous run's output deleted first, so every run writes into page cache freed by
the last one, as on a machine whose memory is full of cache; the best run of each is compared.
(On this VM a write into memory the kernel has not used lately costs several times more: the
first conversion of a session runs at about half speed, and keeping every run's output made all
of them that slow.) Then `prepare` runs again over the unchanged files: the cache is reused
(timed in this process, and as a fresh `python -m datasets prepare` command with its imports).

    python benchmarks/beton_write.py [--images 2048] [--workers N] [--repeats 3] [--workdir DIR] [--quick]
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import subprocess
import sys
import tempfile
from multiprocessing import get_context
from pathlib import Path

from common import ROOT, headline, jpeg_tree, side_by_side, stopwatch

GOAL = 1.0
MAX_RESOLUTION = 512


def _shrink(job: tuple[str, str]) -> None:
    from PIL import Image

    source, target = job
    with Image.open(source) as img:
        img.draft("RGB", (MAX_RESOLUTION, MAX_RESOLUTION))  # what any sensible script does for big JPEGs
        img = img.convert("RGB")
        img.thumbnail((MAX_RESOLUTION, MAX_RESOLUTION), Image.BILINEAR)
        img.save(target, quality=90)


def plain_loop(files: list[Path], out: Path, workers: int) -> float:
    """Seconds to resize and re-encode `files` into `out` with a process pool."""
    jobs = [(str(f), str(out / f"{i:07d}.jpg")) for i, f in enumerate(files)]
    out.mkdir(parents=True, exist_ok=True)
    with stopwatch() as elapsed:
        with get_context("fork").Pool(workers) as pool:
            pool.map(_shrink, jobs, chunksize=16)
    return elapsed()


def prepare(root: Path, cache: Path, workers: int) -> float:
    """Seconds of `python -m datasets prepare folder` in this process, with `cache` as SWEEPS_CACHE."""
    from datasets.__main__ import main as datasets_main
    from datasets.readers.image_files import _SCANS

    os.environ["SWEEPS_CACHE"] = str(cache)
    _SCANS.clear()  # the in-memory scan cache would hide the scan of a new cache dir
    with stopwatch() as elapsed, contextlib.redirect_stdout(io.StringIO()):  # its per-split lines
        code = datasets_main(["prepare", "folder", "-o", f"path={root}", "--num-workers", str(workers)])
    if code:
        raise RuntimeError(f"datasets prepare failed with exit code {code}")
    return elapsed()


def _synced(run, *args) -> float:
    """`run(*args)` (seconds) after the disk has taken what earlier runs wrote: none pays another's writeback."""
    os.sync()
    return run(*args)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=2048, help="training images (default 2048; plus a val split)")
    p.add_argument("--classes", type=int, default=16)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes (default: every core)")
    p.add_argument("--workdir", help="keep the generated JPEGs here and reuse them (default: a temporary folder)")
    p.add_argument("--repeats", type=int, default=3, help="conversions of each side, alternating; the best of "
                   "each is compared (default 3; 1 with --quick)")
    p.add_argument("--quick", action="store_true", help="tiny inputs: checks that the benchmark runs")
    args = p.parse_args(argv)
    if args.quick:
        args.images, args.classes, args.repeats = 96, 4, 1
    root = jpeg_tree(args.workdir, args.images, args.classes)
    files = sorted(root.glob("*/*/*.jpg"))
    print(f"beton_write: {len(files)} JPEGs at ImageNet-like sizes, {args.workers} processes on {os.cpu_count()} cores",
          flush=True)

    with tempfile.TemporaryDirectory(prefix="bench-beton-") as tmp:
        tmp = Path(tmp)
        plains, ours = [], []
        for k in range(args.repeats):  # alternating, so both see the same machine; best of each
            plains.append(_synced(plain_loop, files, tmp / "plain", args.workers))
            shutil.rmtree(tmp / "plain")
            if k == 0:  # the PIL loop's first pool is forked from this process before torch is in it
                with stopwatch() as import_s:  # a fixed cost per command, not per image: reported apart
                    from datasets.storage.ffcv_import import import_ffcv

                    import_ffcv()
            if k:
                shutil.rmtree(tmp / "cache")  # the last conversion's cache stays for the reuse timings
            ours.append(_synced(prepare, root, tmp / "cache", args.workers))
        print(f"  {args.repeats} runs each, alternating: PIL loop {', '.join(f'{s:.2f}' for s in plains)} s | "
              f"prepare {', '.join(f'{s:.2f}' for s in ours)} s; best of each compared", flush=True)
        plain_s, ours_s = min(plains), min(ours)
        ratio = side_by_side("conversion", len(files) / ours_s, len(files) / plain_s, "img/s", "prepare", "PIL loop")
        print(f"  fixed per command, before the timing: importing FFCV and torch {import_s():.2f} s "
              f"(counted in: ratio {plain_s / (ours_s + import_s()):.3f})", flush=True)
        reuse_s = prepare(root, tmp / "cache", args.workers)
        env = {**os.environ, "SWEEPS_CACHE": str(tmp / "cache"), "PYTHONPATH": str(ROOT)}
        with stopwatch() as command_s:
            subprocess.run([sys.executable, "-m", "datasets", "prepare", "folder", "-o", f"path={root}"], cwd=ROOT,
                           env=env, check=True, capture_output=True)
        print(f"  cache reuse (unchanged files): {reuse_s:.2f} s in this process, {command_s():.2f} s as a command "
              f"(interpreter and imports included) | a conversion (best run) {ours_s:.2f} s", flush=True)
    headline("beton_write", ratio, GOAL)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
