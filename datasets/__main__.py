"""Command line of the datasets package.

    python -m datasets prepare SOURCE [--data-root DIR] [--max-resolution N] [--jpeg-fraction F] [--num-workers N]
                                      [-o KEY=VALUE ...]
        write a source's .beton files into the cache (reused when unchanged), with progress bars
    python -m datasets fractaldb-grid --out grid.png [--num-classes 8] [--per-class 6] [--resolution 96]
        a PNG of generated FractalDB samples: one row per class, one column per instance
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

from analysis.cli_parser import OneLineParser, at_least, fraction
from datasets import SourceError, get_source
from datasets.sources import SOURCE_MODULES, SOURCES

PREPARE_EPILOG = """\
--data-root is the folder holding the datasets, as for the sweeps: each on-disk source reads its own
sub-folder (imagenet/, inat2017/, iwildcam_v2.0/, domainnet/, stable_diffusion/, FractalDB-1k/).
A folder of your own images, one sub-folder per class (or train/<class>/ and val/<class>/):
    python -m datasets prepare folder --data-root /data -o path=my_images      # reads /data/my_images
Options (-o KEY=VALUE): max_resolution (on-disk sources), path, val_fraction, seed (folder),
domains=[...] (domainnet), num_classes, images_per_class, val_per_class, resolution (generated).
Unreadable images are skipped and listed; a class left without training or validation images
gets a warning."""


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
    if args.jpeg_fraction is not None:
        if not on_disk:
            raise SourceError(f"--jpeg-fraction: {args.source} draws or transforms its images and stores them its own "
                              "way; the flag is for sources read from image files")
        src.jpeg_fraction = args.jpeg_fraction
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


def _parser() -> argparse.ArgumentParser:
    import importlib

    for module in SOURCE_MODULES:  # the registry fills as the source modules are imported (no torch, no FFCV)
        importlib.import_module(module)
    parser = OneLineParser(prog="python -m datasets", description="Prepare data sources; draw FractalDB samples.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{prepare,fractaldb-grid}")
    p = sub.add_parser("prepare", help="write a source's .beton files into the cache (reused when unchanged)",
                       description="Check every image of a source once and write its .beton files into the cache "
                                   "($SWEEPS_CACHE, default ~/.cache/robustness_sweeps), with progress bars.",
                       epilog=PREPARE_EPILOG)
    p.add_argument("source", choices=sorted(SOURCES), metavar="SOURCE", help=f"one of: {', '.join(sorted(SOURCES))}")
    p.add_argument("--data-root", metavar="DIR",
                   help="the folder holding the datasets (e.g. /data with /data/imagenet/train/...); not needed for "
                        "generated sources")
    p.add_argument("--max-resolution", type=at_least(8), metavar="N",
                   help="on-disk sources: longer side stored (default 512; iwildcam 448 x 448 squares); generated "
                        "sources: their resolution (default: the source's)")
    p.add_argument("--jpeg-fraction", type=fraction, metavar="F",
                   help="on-disk sources: the fraction of images stored as JPEG (a colour JPEG that fits as its own "
                        "file, others re-encoded at quality 90), chosen by content; the rest are stored as raw pixels, "
                        "~6x larger and read without decoding (default 0.5, as FFCV's ImageNet example; 1: every "
                        "image JPEG, the smallest file). A sweep reads whichever file prepare wrote")
    p.add_argument("--num-workers", type=at_least(1), default=os.cpu_count() or 1, metavar="N",
                   help="processes for checking and converting images (default: every core, here "
                        f"{os.cpu_count() or 1}; a standalone command)")
    p.add_argument("-o", "--option", action="append", default=[], metavar="KEY=VALUE",
                   help="source option, repeatable, e.g. -o path=my_images (folder), -o num_classes=100 (fractaldb); "
                        "the epilog lists them")
    g = sub.add_parser("fractaldb-grid", help="write a PNG grid of generated FractalDB samples",
                       description="A PNG of generated FractalDB samples: one row per class, one column per instance.")
    g.add_argument("--out", required=True, metavar="PNG", help="the PNG file to write")
    g.add_argument("--num-classes", type=at_least(1), default=8, metavar="N", help="rows: classes")
    g.add_argument("--per-class", type=at_least(1), default=6, metavar="N", help="columns: instances per class")
    g.add_argument("--resolution", type=at_least(8), default=96, metavar="PX", help="pixels per sample")
    g.add_argument("--seed", type=at_least(0), default=0, metavar="N", help="seed of the drawn fractals")
    g.add_argument("--num-workers", type=at_least(1), default=1, metavar="N", help="processes drawing samples")
    g.add_argument("--color", action="store_true", help="coloured fractals (default: grey, as FractalDB)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return prepare(args) if args.command == "prepare" else fractaldb_grid(args)
    except (SourceError, ValueError, OSError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
