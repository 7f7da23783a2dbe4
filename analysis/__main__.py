"""Command line: ``python -m analysis report PATH [PATH ...] [--out DIR] [--transform ...]``.

PATHs are sweep or Tune experiment dirs, local or URIs (``s3://``, ``gs://``, ``file://``).

Errors print one line (no traceback) naming the path and the fix, and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys
import warnings

from analysis.transforms import TRANSFORMS


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m analysis", description=__doc__.splitlines()[0], allow_abbrev=False)
    sub = parser.add_subparsers(dest="command", required=True)
    rep = sub.add_parser(
        "report", allow_abbrev=False,
        help="trend fits, effective robustness and the ID/OOD scatter of sweep results",
        description="Read Tune experiment dirs; write points.csv, trends.csv, residuals.csv, "
        "scatter/residuals/er_bars .png/.pdf and a self-contained report.html.",
    )
    rep.add_argument("paths", nargs="+", metavar="PATH", help="sweep dirs or Tune experiment dirs")
    rep.add_argument("--out", metavar="DIR", default=None, help="output dir (default: PATH/report)")
    rep.add_argument("--transform", choices=TRANSFORMS, default="probit", help="axes of the fits")
    rep.add_argument(
        "--baseline", metavar="GROUP", default="scratch",
        help="group (or --baseline-file entry) whose trend ER is measured against",
    )
    rep.add_argument(
        "--group-by", metavar="COLUMN[,COLUMN]", default="group",
        help="columns defining groups (default: target when several, pre-training source, intervention, value)",
    )
    rep.add_argument("--metric", choices=("f1", "acc"), default="f1", help="macro-F1 (default) or accuracy")
    rep.add_argument(
        "--ood", metavar="SET", default="ood",
        help="OOD set: 'ood' (pooled, default) or a domain evaluated on its own, e.g. sketch (DomainNet)",
    )
    rep.add_argument(
        "--baseline-file", metavar="PATH", default=None,
        help="YAML/JSON with trends given as parameters (name, slope, intercept, transform)",
    )
    rep.add_argument(
        "--residual-trend", metavar="GROUP", default=None,
        help="trend of the residual-by-epoch check (default: leave-one-architecture-out fits within the "
        "'full' group, else the --baseline group)",
    )
    rep.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default 0)")
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
