"""The command line every sweep script shares, and the embedded defaults for CPU runs.

A sweep script declares its spec (real data and embedded default); `sweep_main` parses the common
flags, validates each one (a one-line error naming the flag and its valid values), applies
`--smoke`, `--archs`, `--sources`, `--targets`, `--values`, `--seeds` and `--weights`, runs the
sweep, writes the report and ends with a summary: cells finished and errored, where the results
and `report.html` are, and the next command to run. Ctrl-C ends with one line saying how to
resume (exit status 130); `--fresh` asks before it moves a sweep aside.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
import time
import warnings
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from analysis.cli_parser import OneLineParser, at_least, number_at_least
from engine.cli_help import (
    RECIPE_HELP,
    SweepChoices,
    architectures_help,
    embedded_help,
    plain,
    sweep_choices,
    unavailable_help,
)
from engine.recipes import EMBEDDED_RECIPE, SMOKE_RECIPE
from engine.spec import SweepSpec

if TYPE_CHECKING:
    from engine.runner import RunOptions

__all__ = ["EMBEDDED_ARCHS", "EMBEDDED_RECIPE", "EMBEDDED_SEEDS", "REAL_ARCHS", "RECIPE_HELP", "SMOKE_RECIPE",
           "SweepParser", "apply_flags", "command_line", "embedded_help", "parser", "sweep_main"]

EMBEDDED_ARCHS = ("resnet18", "mobilenet_v3_small")
# The papers' ImageNet architectures (torchvision), for the real-data sweeps.
REAL_ARCHS = ("resnet50", "resnet18", "densenet121", "resnext50_32x4d", "mobilenet_v3_large", "alexnet")
# Two seeds x two architectures: four trials per group, enough for a trial-resampled CI (three is the minimum).
EMBEDDED_SEEDS = 2
# --smoke: the smallest run that still generates data, trains, reports to Tune and fits trends.
SMOKE_SOURCE_OPTIONS = {
    "synthnet": {"num_classes": 20, "images_per_class": 30, "val_per_class": 5},
    "synthnet_breeds": {"images_per_class": 12, "val_per_class": 2},
    "fractaldb": {"num_classes": 10, "images_per_class": 30, "val_per_class": 5},
}
# Per target source, as sources: an on-disk target (iwildcam, ...) takes no size options and keeps its own.
SMOKE_TARGET_OPTIONS = {
    "synthcam": {"num_classes": 8, "train_size": 320, "eval_size": 96, "test_size": 96},
    "synthdomains": {"num_classes": 8, "train_per_class": 20, "test_per_class": 6},
    "support_shift": {"base_options": {"num_classes": 6, "images_per_class": 30, "val_per_class": 10, "seed": 1}},
}
SMOKE_TARGETS = 2   # a grid of targets keeps its first two under --smoke
# --smoke keeps the sweep's recipe (optimisers, learning rates, precision) at the smallest size and length.
SMOKE_RECIPE_CHANGES = {k: getattr(SMOKE_RECIPE, k) for k in (
    "pretrain_epochs", "finetune_epochs", "pretrain_resolution", "finetune_resolution", "pretrain_batch_size",
    "finetune_batch_size")}


class SweepParser(OneLineParser):
    """The sweep scripts' parser: one-line errors, the closest valid flag for a typo, no prefix matching."""


def _names(text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    if not names:
        raise argparse.ArgumentTypeError("give at least one name, comma-separated")
    return names


def _values(text: str) -> tuple:
    """Comma-separated JSON scalars: `25000,50000` -> ints, `0.33` -> float, `animal` -> str, `null` -> None."""
    out = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        try:
            value = json.loads(part)
        except json.JSONDecodeError:
            value = part
        if isinstance(value, (list, dict)):
            raise argparse.ArgumentTypeError(f"{part!r} is not a single value")
        out.append(value)
    if not out:
        raise argparse.ArgumentTypeError("give at least one value, comma-separated")
    return tuple(out)


def parser(description: str, epilog: str | None = None, choices: SweepChoices | None = None) -> SweepParser:
    """The shared flags; `choices` (the sweep's grid) fills in what each grid flag accepts."""
    c = choices or SweepChoices()
    p = SweepParser(description=plain(description), epilog=epilog)
    p.add_argument("--data-root", metavar="DIR",
                   help="folder holding the real datasets (one sub-folder each: imagenet/, inat2017/, iwildcam_v2.0/, "
                        "...); omit for the embedded default, generated here")
    p.add_argument("--storage-path", metavar="PATH|s3://BUCKET/PREFIX",
                   help="where sweeps and pre-trained models are stored: a local or shared directory, or "
                        "s3://bucket/prefix (an S3-compatible store through AWS_ENDPOINT_URL; credentials from the "
                        "environment or the instance role) (default $SWEEPS_STORAGE or ~/robustness_sweeps)")
    p.add_argument("--address", metavar="ADDRESS",
                   help="Ray cluster to join, e.g. 'auto' for one started with ray start or ray up (default: start "
                        "a local Ray for this sweep)")
    p.add_argument("--archs", type=_names, metavar="A,B",
                   help="architectures, replacing the sweep's (default: " + (c.text("archs") or "the sweep's")
                        + "); any name of the list below")
    p.add_argument("--sources", type=_names, metavar="S,T",
                   help="run only these of the sweep's pre-training sources: "
                        + (c.text("sources") or "see the script"))
    p.add_argument("--targets", type=_names, metavar="T,U",
                   help="run only these of the sweep's fine-tuning targets: " + (c.text("targets") or "see the script"))
    p.add_argument("--values", type=_values, metavar="V,W",
                   help="run only these of the sweep's intervention values (JSON scalars: 25000, 0.33, animal): "
                        + (c.text("values") or "see the script"))
    p.add_argument("--seeds", type=at_least(1), metavar="N",
                   help="seeds per cell, an integer >= 1 (default: " + (c.text("seeds") or "the sweep's") + ")")
    p.add_argument("--weights", metavar="[SOURCE:]ARCH=PATH",
                   help="start the cells of (SOURCE, ARCH) that would pre-train from a local checkpoint instead "
                        "(full cells: a torchvision state dict; clip cells: an open_clip checkpoint); comma-separated; "
                        "SOURCE defaults to the sweep's first source; loaded with weights_only=True")
    p.add_argument("--cpus-per-trial", type=number_at_least(0, strict=True), default=1.0, metavar="N",
                   help="CPU cores per trial, a number > 0 (default 1)")
    p.add_argument("--gpus-per-trial", type=number_at_least(0), default=0.0, metavar="F",
                   help="GPUs per trial, a number >= 0; fractions share a GPU between trials (default 0)")
    p.add_argument("--max-concurrent", type=at_least(1), metavar="N",
                   help="run at most N cells at a time, an integer >= 1 (default: as many as the cluster's resources fit)")
    p.add_argument("--max-failures", type=at_least(0), default=2, metavar="N",
                   help="retry a cell that fails (an exception, a lost node) up to N times, each from its last epoch "
                        "checkpoint (default 2)")
    p.add_argument("--pretrain-wait", type=number_at_least(0, strict=True), default=24.0, metavar="HOURS",
                   help="how long a cell waits for another cell that is pre-training the same model before it fails "
                        "(default 24)")
    p.add_argument("--deterministic", action="store_true",
                   help="deterministic kernels; no cudnn.benchmark, TF32 or torch.compile (slower; recorded per cell)")
    p.add_argument("--compile", action="store_true", help="torch.compile every model (pays off on GPUs; recorded per cell)")
    p.add_argument("--fresh", action="store_true",
                   help="move the old sweep directory to <sweep>.old-<time> and start over; asks first on a terminal")
    p.add_argument("--yes", action="store_true", help="answer yes to --fresh's question (needed without a terminal)")
    p.add_argument("--smoke", action="store_true", help="smallest real run (tests, CI); stored in <sweep>-smoke")
    p.add_argument("--dry-run", action="store_true", help="print the cells and a cost estimate; start nothing")
    p.add_argument("--no-report", action="store_true", help="skip the analysis report at the end")
    return p


class FlagError(ValueError):
    """A flag that names something the sweep does not have; one line with the valid choices."""


def _keep(flag: str, chosen: tuple, available: tuple) -> tuple:
    unknown = [c for c in chosen if c not in available]
    if unknown:
        raise FlagError(f"{flag} {','.join(map(str, chosen))}: {unknown[0]!r} is not in this sweep; choose from "
                        f"{', '.join(map(str, available))}")
    return tuple(c for c in available if c in chosen)


def apply_flags(spec: SweepSpec, args: argparse.Namespace) -> SweepSpec:
    """The spec with `--smoke` and the grid-selecting flags applied."""
    from engine.weights import parse_weights

    if args.smoke:
        arms = tuple(replace(a, values=a.smoke_values or a.values[:2], params={**a.params, **a.smoke_params})
                     for a in spec.all_arms())
        targets = tuple(replace(t, options={**t.options, **SMOKE_TARGET_OPTIONS.get(t.registered, {})})
                        for t in (tuple(t for t in spec.all_targets() if t.name in spec.smoke_targets)
                                  or spec.all_targets()[:SMOKE_TARGETS]))
        spec = replace(spec, smoke=True, archs=spec.archs[:1], seeds=1, arms=arms, intervention="", values=(),
                       targets=targets, recipe=replace(spec.recipe, **SMOKE_RECIPE_CHANGES),
                       source_options={**spec.source_options, **SMOKE_SOURCE_OPTIONS})
    if args.archs:
        spec = replace(spec, archs=args.archs)
    if args.seeds:
        spec = replace(spec, seeds=args.seeds)
    if args.sources:
        spec = replace(spec, sources=_keep("--sources", args.sources, spec.pretraining_sources()),
                       arms=tuple(replace(a, sources=tuple(s for s in (a.sources or spec.sources) if s in args.sources))
                                  for a in spec.all_arms()), intervention="", values=())
        spec = replace(spec, arms=tuple(a for a in spec.arms if a.sources))
    if args.targets:
        names = _keep("--targets", args.targets, tuple(t.name for t in spec.all_targets()))
        spec = replace(spec, targets=tuple(t for t in spec.all_targets() if t.name in names))
    if args.values:
        present = tuple(dict.fromkeys(v for a in spec.all_arms() for v in a.values))
        _keep("--values", args.values, present)
        arms = tuple(replace(a, values=tuple(v for v in a.values if v in args.values)) for a in spec.all_arms())
        spec = replace(spec, arms=tuple(a for a in arms if a.values), intervention="", values=())
    if args.weights:
        spec = replace(spec, weights=parse_weights(args.weights, spec.sources[0] if spec.sources else "none",
                                                    spec.archs))
    return spec


def command_line(argv: list[str], drop: tuple[str, ...] = ("--fresh", "--yes")) -> str:
    """The command that ran this script with `argv`, minus the flags in `drop`, as a user can paste it."""
    python = sys.executable
    on_path = shutil.which("python")
    if on_path and os.path.realpath(on_path) == os.path.realpath(python):
        python = "python"
    return shlex.join([python, sys.argv[0], *(a for a in argv if a not in drop)])


def _confirm_fresh(yes: bool) -> Callable[[Path, str], None]:
    """--fresh's check before a sweep directory is moved aside: --yes, or a "y" typed on a terminal."""
    def confirm(directory: Path, holds: str) -> None:
        if yes:
            return
        where = f"{directory.name}.old-<time>"
        if not sys.stdin.isatty():
            raise FlagError(f"--fresh would move {directory} ({holds}) to {where}; without a terminal to confirm, "
                            "add --yes (or re-run without --fresh to resume it)")
        try:
            answer = input(f"--fresh: move {directory} ({holds}) to {where} and start over? [y/N] ")
        except EOFError:
            answer = ""
        if answer.strip().lower() not in ("y", "yes"):
            raise FlagError(f"--fresh not confirmed: {directory} is unchanged (re-run without --fresh to resume it)")
    return confirm


def _summary(directory: Path | str, status: dict[str, str], seconds: float, report: Path | str | None, argv: list[str],
             smoke: bool) -> str:
    """The lines that end a sweep: what finished, where everything is, what to run next."""
    from engine.console import duration
    from engine.runner import tensorboard_dir
    from datasets.storage.location import Location

    counts = Counter(status.values())
    lines = [f"done: {counts['finished']} of {len(status)} cells finished, {counts['errored']} errored"
             + (f", {counts['unfinished']} unfinished" if counts["unfinished"] else "") + f" ({duration(seconds)})",
             f"results: {directory}"]
    if report is not None:
        shown = f"{report}/report.html" if isinstance(report, str) else (report / "report.html").resolve().as_uri()
        lines.append(f"report:  {shown}")
    if counts["errored"] or counts["unfinished"]:
        todo = counts["errored"] + counts["unfinished"]
        nxt = f"{command_line(argv)}   (re-runs the {todo} cells that did not finish, from their last checkpoint)"
    elif report is None:
        nxt = f"python -m analysis report {shlex.quote(str(directory))}"
    elif smoke:
        whole = command_line(argv, ("--fresh", "--yes", "--smoke"))
        nxt = f"{whole}   (the whole sweep; add --dry-run to see its cost)"
    else:
        where = tensorboard_dir(Location.of(directory))
        nxt = f"tensorboard --logdir {shlex.quote(str(where))}   (training curves per cell)"
    return "\n".join(lines + [f"next:    {nxt}"])


def sweep_main(build: Callable[[argparse.Namespace], SweepSpec], description: str, argv=None,
               epilog: str | None = None, report_options: dict | None = None,
               before_report: Callable[[Path, SweepSpec, RunOptions], None] | None = None,
               flags: Callable[[argparse.ArgumentParser], None] | None = None) -> int:
    """Entry point of a sweep script: `build(args)` returns the spec for the given flags.

    `report_options` are passed to the report (e.g. `{"metric": "acc"}` where the paper plots accuracy).
    `before_report(sweep directory, spec, run options)` runs after the cells, before the report: a
    sweep's own files for the analysis (e.g. `support_shift`'s features of a natural shift).
    `flags(parser)` adds the sweep's own flags (e.g. `support_shift`'s `--reference`, `--shifted`,
    `--split`); `build` reads them from its `args`.
    Exit status: 0 done, 1 some cells failed (after their retries; each is listed with its exception
    and log), 2 a bad flag or input (one line), 130 interrupted (Ctrl-C; one line says how to resume).
    """
    from analysis.report import write_report
    from engine.runner import (
        RunOptions,
        SweepInterrupted,
        cell_errors,
        cell_status,
        run_plan,
        sweep_dir,
        validate,
    )
    from engine.speed import Speed

    argv = sys.argv[1:] if argv is None else list(argv)
    def make_parser(text: str | None = None, grid: SweepChoices | None = None) -> SweepParser:
        p = parser(description, text, grid)
        if flags is not None:
            flags(p)
        return p

    defaults = make_parser().parse_args([])
    choices = sweep_choices(build, defaults)
    extra = "\n\n".join(t for t in (unavailable_help(choices), architectures_help()) if t)
    args = make_parser(f"{epilog}\n\n{extra}" if epilog else extra, choices).parse_args(argv)
    warnings.formatwarning = lambda message, category, *rest, **kw: f"warning: {message}\n"
    start, spec, plan = time.monotonic(), None, None
    try:
        options = RunOptions(data_root=args.data_root, storage_path=args.storage_path, address=args.address,
                             cpus_per_trial=args.cpus_per_trial, gpus_per_trial=args.gpus_per_trial,
                             fresh=args.fresh, dry_run=args.dry_run, confirm_fresh=_confirm_fresh(args.yes),
                             speed=Speed(deterministic=args.deterministic, compile=args.compile),
                             max_concurrent=args.max_concurrent, max_failures=args.max_failures,
                             pretrain_wait_s=args.pretrain_wait * 3600)
        spec = apply_flags(build(args), args)
        plan = validate(spec, options)
        directory = run_plan(spec, plan, options)
    except (SweepInterrupted, KeyboardInterrupt):
        done = ""
        if plan is not None and not args.dry_run:
            directory = sweep_dir(spec, options)
            status = cell_status(directory, plan.grid)
            done = f"{Counter(status.values())['finished']} of {len(status)} cells finished; "
            if "finished" in status.values():  # a report is only written when asked for, on a partial sweep
                print(f"\na report of the finished cells: python -m analysis report {shlex.quote(str(directory))}",
                      file=sys.stderr)
        print(f"interrupted: {done}the others keep their last finished epoch. Resume with: {command_line(argv)}",
              file=sys.stderr)
        return 130
    except (ValueError, OSError, RuntimeError) as error:  # our one-line errors; Tune's own are raised as-is
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.dry_run:
        return 0
    report = None
    if before_report is not None:
        try:
            before_report(directory, spec, options)
        except (ValueError, OSError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
    if not args.no_report:
        print(f"\nreport of {directory}:")
        try:
            out = f"{directory}/report" if isinstance(directory, str) else directory / "report"
            report = write_report([directory], out_dir=out, **(report_options or {}))
        except (ValueError, OSError) as error:  # e.g. every cell errored: nothing to fit
            print(f"report: not written: {error}", file=sys.stderr)
        except KeyboardInterrupt:
            print(f"\ninterrupted while writing the report; write it with: python -m analysis report "
                  f"{shlex.quote(str(directory))}", file=sys.stderr)
            return 130
    status = cell_status(directory, plan.grid)
    print("\n" + _summary(directory, status, time.monotonic() - start, report, argv, spec.smoke))
    failed = cell_errors(directory, plan.grid)
    if failed:
        print(_failures(failed, plan.grid, len(status)), file=sys.stderr)
        return 1
    return 0


def _failures(failed: dict[str, tuple[Path, str]], grid: list[dict], total: int) -> str:
    """One line per failed cell: its name and id, the exception it ended with, and its log."""
    from engine.spec import describe_cell

    names = {c["cell_id"]: describe_cell(c) for c in grid}
    lines = [f"failed: {len(failed)} of {total} cells ended with an error after their retries:"]
    for cell, (trial_dir, exception) in failed.items():
        lines.append(f"  {names[cell]} (cell {cell}): {exception}  log: {trial_dir / 'error.txt'}")
    return "\n".join(lines)
