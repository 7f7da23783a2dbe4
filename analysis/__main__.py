"""Command line: python -m analysis report PATH [PATH ...] [--out DIR] [--transform ...].

PATHs are sweep or Tune experiment dirs, local or URIs (s3://, gs://, file://).

Errors print one line (no traceback) naming the path and the fix, and exit with status 2; so do
wrong flags (with the closest valid flag for a typo).
"""

from __future__ import annotations

import argparse
import sys
import warnings

from analysis.cli_parser import OneLineParser, at_least
from analysis.transforms import TRANSFORMS

REPORT_EPILOG = """Reads experiment directories only (never a live cluster): local paths or URIs through pyarrow,
e.g. s3://bucket/sweeps/data_quantity (credentials from the usual AWS/GCS environment), gs://...,
file://... . Directories named <sweep>.old-<time> (left by --fresh) are skipped unless given.
Group labels look like scratch, imagenet/full, imagenet/quantity=25000 (and "<target>: ..." with
several targets). Scores and ER are fractions in the CSV files, percent and pp on the page."""


def _parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="python -m analysis", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="{report}")
    rep = sub.add_parser(
        "report",
        help="trend fits, effective robustness and the ID/OOD scatter of sweep results",
        description="Read sweep or Tune experiment dirs (local, s3://, gs:// or file://); write points.csv, "
        "trends.csv, residuals.csv, selection.csv, the figures (.png and .pdf) and a self-contained report.html.",
        epilog=REPORT_EPILOG,
    )
    rep.add_argument("paths", nargs="+", metavar="PATH",
                     help="sweep dirs or Tune experiment dirs: local paths or s3://, gs://, file:// URIs")
    rep.add_argument("--out", metavar="DIR", default=None,
                     help="output dir, a path or a URI (default: PATH/report of the first PATH)")
    rep.add_argument("--transform", choices=TRANSFORMS, default="probit",
                     help="axes of the fits and the scatter: probit (Miller et al.), logit (Taori et al.) or linear")
    rep.add_argument(
        "--baseline", metavar="GROUP", default="scratch",
        help="group (or --baseline-file entry) whose trend ER is measured against",
    )
    rep.add_argument(
        "--group-by", metavar="COLUMN[,COLUMN]", default="group",
        help="columns defining groups (default: target when several, pre-training source, intervention, value)",
    )
    rep.add_argument("--metric", choices=("f1", "acc"), default="f1", help="macro-F1 (f1) or accuracy (acc)")
    rep.add_argument(
        "--ood", metavar="SET", default="ood",
        help="OOD set: 'ood' (pooled) or a domain evaluated on its own, e.g. sketch (DomainNet)",
    )
    rep.add_argument(
        "--baseline-file", metavar="PATH", default=None,
        help="YAML/JSON with trends given as parameters (name, slope, intercept, transform); none by default",
    )
    rep.add_argument(
        "--residual-trend", metavar="GROUP", default=None,
        help="trend of the residual-by-epoch check (default: leave-one-architecture-out fits within the "
        "'full' group, else the --baseline group)",
    )
    rep.add_argument("--seed", type=at_least(0), default=0, help="seed of every bootstrap, an integer >= 0")
    rep.add_argument(
        "--progress", action=argparse.BooleanOptionalAction, default=None,
        help="progress bar while reading trials (default: on a terminal, from 200 trials)",
    )
    return parser


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> str:
    return f"warning: {message}\n"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    warnings.formatwarning = _one_line_warning
    from analysis.report import (
        write_report,  # heavy imports only once the arguments parse
    )

    try:
        write_report(
            args.paths, args.out, args.transform, args.baseline, args.group_by,
            baseline_file=args.baseline_file, progress=args.progress, seed=args.seed,
            residual_trend=args.residual_trend, metric=args.metric, ood=args.ood,
        )
    except (OSError, ValueError) as exc:
        print(f"python -m analysis report: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
