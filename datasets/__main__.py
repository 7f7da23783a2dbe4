"""Command line of the datasets package.

    python -m datasets prepare SOURCE [--data-root DIR] [--max-resolution N] [--num-workers N] [-o KEY=VALUE ...]
        write a source's `.beton` files into the cache (reused when unchanged), with progress bars
    python -m datasets fractaldb-grid --out grid.png [--num-classes 8] [--per-class 6] [--resolution 96]
        a PNG of generated FractalDB samples: one row per class, one column per instance
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

from datasets import SourceError, get_source


def parse_options(pairs: list[str]) -> dict:
    """`KEY=VALUE` pairs; values are JSON when they parse (numbers, lists, true), else strings."""
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SourceError(f"-o {pair}: expected KEY=VALUE, e.g. -o path=stable_diffusion")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


def prepare(args: argparse.Namespace) -> int:
    from datasets.readers.image_files import ImageFileSource

    start = time.monotonic()
    options = parse_options(args.option)
    if args.max_resolution and args.source not in ("synthnet", "synthcam", "fractaldb"):
        options["max_resolution"] = args.max_resolution  # on-disk sources: the stored resolution
    src = get_source(args.source, data_root=args.data_root, **options)
    on_disk = isinstance(src, ImageFileSource)
    resolution = None if on_disk else args.max_resolution
    for split in src.splits:
        path = src.beton(split, resolution, num_workers=args.num_workers)
        line = f"{src.name}/{split}: {len(src.labels(split))} images -> {path}"
        if on_disk:
            skipped = src.num_skipped(split)
            line += f" ({skipped} unreadable skipped, listed in {src.skipped_log(split)})" if skipped else ""
        print(line)
    print(f"done in {time.monotonic() - start:.2f} s")
    return 0


def fractaldb_grid(args: argparse.Namespace) -> int:
    from PIL import Image

    from datasets.generators.fractaldb import sample_grid

    grid = sample_grid(args.num_classes, args.per_class, args.resolution, args.seed, args.num_workers, args.color)
    Image.fromarray(grid).save(args.out)
    print(f"{args.out}: {args.num_classes} classes (rows) x {args.per_class} instances (columns), {args.resolution} px each")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m datasets")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="write a source's .beton files (reused when unchanged)")
    p.add_argument("source")
    p.add_argument("--data-root", help="the folder holding the datasets (e.g. /data with /data/imagenet/train, ...)")
    p.add_argument("--max-resolution", type=int,
                   help="on-disk sources: longer side stored (default 512; iwildcam 448 x 448 squares); generated: their resolution")
    p.add_argument("--num-workers", type=int, default=os.cpu_count() or 1,
                   help="processes for checking and converting images (default: every core; a standalone command)")
    p.add_argument("-o", "--option", action="append", default=[], metavar="KEY=VALUE",
                   help="source option, e.g. -o path=stable_diffusion (folder), -o num_classes=100 (fractaldb)")
    g = sub.add_parser("fractaldb-grid", help="write a PNG grid of generated FractalDB samples")
    g.add_argument("--out", required=True)
    g.add_argument("--num-classes", type=int, default=8)
    g.add_argument("--per-class", type=int, default=6)
    g.add_argument("--resolution", type=int, default=96)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--num-workers", type=int, default=1)
    g.add_argument("--color", action="store_true")
    args = parser.parse_args(argv)
    try:
        return prepare(args) if args.command == "prepare" else fractaldb_grid(args)
    except (SourceError, ValueError, OSError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
