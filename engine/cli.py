"""The command line every sweep script shares, and the embedded defaults for CPU runs.

A sweep script declares its spec (full data and embedded default); `sweep_main` parses the
common flags, applies `--smoke`, `--archs` and `--seeds`, runs the sweep and writes the report.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from typing import Callable

from engine.spec import Recipe, SweepSpec

# The embedded default: sizes and recipes chosen so a sweep runs in minutes on 2 CPU cores.
EMBEDDED_RECIPE = Recipe(
    pretrain_epochs=3, pretrain_resolution=32, pretrain_batch_size=64, pretrain_lr=0.2,
    finetune_epochs=4, finetune_resolution=32, finetune_batch_size=32, finetune_lr=1e-3,
)
EMBEDDED_ARCHS = ("resnet18", "mobilenet_v3_small")
# --smoke: the smallest run that still generates data, trains, reports to Tune and fits trends.
SMOKE_RECIPE = replace(EMBEDDED_RECIPE, pretrain_epochs=1, finetune_epochs=2)
SMOKE_SOURCE_OPTIONS = {"synthnet": {"num_classes": 20, "images_per_class": 30, "val_per_class": 5},
                        "fractaldb": {"num_classes": 10, "images_per_class": 30, "val_per_class": 5}}
# Per target name, as sources: an on-disk target (iwildcam, ...) takes no size options and keeps its own.
SMOKE_TARGET_OPTIONS = {"synthcam": {"num_classes": 8, "train_size": 320, "eval_size": 96, "test_size": 96}}


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--data-root", help="folder holding the real datasets; omit for the embedded default")
    p.add_argument("--storage-path", help="where sweeps are stored (default $SWEEPS_STORAGE or ~/robustness_sweeps)")
    p.add_argument("--address", help="Ray cluster address, e.g. 'auto' on a cluster started with ray up")
    p.add_argument("--archs", help="comma-separated torchvision architectures (overrides the sweep's)")
    p.add_argument("--seeds", type=int, help="number of seeds per cell (overrides the sweep's)")
    p.add_argument("--cpus-per-trial", type=float, default=1)
    p.add_argument("--gpus-per-trial", type=float, default=0, help="fractions share a GPU between trials")
    p.add_argument("--fresh", action="store_true", help="move the old sweep directory aside and start over")
    p.add_argument("--smoke", action="store_true", help="smallest real run (tests, CI); stored in <sweep>-smoke")
    p.add_argument("--dry-run", action="store_true", help="print the cells and a cost estimate; start nothing")
    p.add_argument("--no-report", action="store_true", help="skip the analysis report at the end")
    return p


def apply_flags(spec: SweepSpec, args: argparse.Namespace) -> SweepSpec:
    if args.smoke:
        spec = replace(spec, smoke=True, archs=spec.archs[:1], seeds=1,
                       values=spec.smoke_values or spec.values[:2], recipe=SMOKE_RECIPE,
                       source_options={**spec.source_options, **SMOKE_SOURCE_OPTIONS},
                       target_options={**spec.target_options, **SMOKE_TARGET_OPTIONS.get(spec.target, {})})
    if args.archs:
        spec = replace(spec, archs=tuple(a.strip() for a in args.archs.split(",") if a.strip()))
    if args.seeds:
        spec = replace(spec, seeds=args.seeds)
    return spec


def sweep_main(build: Callable[[argparse.Namespace], SweepSpec], description: str, argv=None) -> int:
    """Entry point of a sweep script: `build(args)` returns the spec for the given flags."""
    from analysis.report import write_report
    from engine.runner import RunOptions, run_sweep

    args = parser(description).parse_args(argv)
    options = RunOptions(data_root=args.data_root, storage_path=args.storage_path, address=args.address,
                         cpus_per_trial=args.cpus_per_trial, gpus_per_trial=args.gpus_per_trial,
                         fresh=args.fresh, dry_run=args.dry_run)
    try:
        spec = apply_flags(build(args), args)
        directory = run_sweep(spec, options)
    except (ValueError, OSError, RuntimeError) as error:  # our one-line errors; Tune's own are raised as-is
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.dry_run:
        return 0
    print(f"results: {directory}")
    if not args.no_report:
        report = write_report([directory], out_dir=directory / "report")
        print(f"report: {report}")
    return 0
