"""`python -m datasets prepare SOURCE [--data-root DIR] [--max-resolution N]`: build the `.beton` cache."""
from __future__ import annotations

import argparse
import sys
import time

from datasets import SourceError, get_source


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m datasets")
    sub = parser.add_subparsers(dest="command", required=True)
    prepare = sub.add_parser("prepare", help="write a source's .beton files (reused when unchanged)")
    prepare.add_argument("source")
    prepare.add_argument("--data-root")
    prepare.add_argument("--max-resolution", type=int, help="stored resolution (default: the source's own)")
    prepare.add_argument("--num-workers", type=int, default=1)
    args = parser.parse_args(argv)
    start = time.monotonic()
    try:
        src = get_source(args.source, data_root=args.data_root)
        for split in src.splits:
            path = src.beton(split, args.max_resolution, num_workers=args.num_workers)
            print(f"{src.name}/{split}: {len(src.labels(split))} images -> {path}")
    except (SourceError, ValueError, OSError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"done in {time.monotonic() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
