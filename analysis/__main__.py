"""Command line: ``python -m analysis report PATH [PATH ...] [--out DIR] [--transform ...]``.

Errors print one line (no traceback) naming the path and the fix, and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys
import warnings

from analysis.transforms import TRANSFORMS


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m analysis", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    rep = sub.add_parser(
        "report",
        help="trend fits, effective robustness and the ID/OOD scatter of sweep results",
        description="Read Tune experiment dirs; write points.csv, trends.csv, scatter.png/.pdf.",
    )
    rep.add_argument("paths", nargs="+", metavar="PATH", help="sweep dirs or Tune experiment dirs")
    rep.add_argument("--out", metavar="DIR", default=None, help="output dir (default: PATH/report)")
    rep.add_argument("--transform", choices=TRANSFORMS, default="probit", help="axes of the fits")
    rep.add_argument("--baseline", metavar="GROUP", default="scratch", help="ER is relative to it")
    rep.add_argument("--group-by", metavar="COLUMN", default="group", help="column defining groups")
    return parser


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> str:
    return f"warning: {message}\n"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    warnings.formatwarning = _one_line_warning
    from analysis.report import write_report  # heavy imports only once the arguments parse

    try:
        write_report(args.paths, args.out, args.transform, args.baseline, args.group_by)
    except (OSError, ValueError) as exc:
        print(f"python -m analysis report: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
