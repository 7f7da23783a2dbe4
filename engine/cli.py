"""The command line every sweep script shares, and the embedded defaults for CPU runs.

A sweep script declares its spec (real data and embedded default); `sweep_main` parses the common
flags, validates each one (a one-line error naming the flag and its valid values), applies
`--smoke`, `--archs`, `--sources`, `--targets`, `--values`, `--seeds` and `--weights`, runs the
sweep and writes the report.
"""
from __future__ import annotations

import argparse
import difflib
import json
import sys
import warnings
from dataclasses import replace
from typing import Callable

from engine.recipes import EMBEDDED_RECIPE, SMOKE_RECIPE
from engine.spec import Arm, SweepSpec

__all__ = ["EMBEDDED_ARCHS", "EMBEDDED_RECIPE", "EMBEDDED_SEEDS", "REAL_ARCHS", "RECIPE_HELP", "SMOKE_RECIPE",
           "SweepParser", "apply_flags", "embedded_help", "parser", "sweep_main"]

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
}
SMOKE_TARGETS = 2   # a grid of targets keeps its first two under --smoke


RECIPE_HELP = """\
Recipes. With --data-root: pre-training follows PyTorch's reference ImageNet recipe (SGD, momentum
0.9, lr 0.1 per 256 images (AlexNet 0.01), weight decay 1e-4, 90 epochs, lr x0.1 at epochs 30 and
60, RandomResizedCrop(224) scale (0.08, 1) + flip, evaluation Resize(256) + CenterCrop(224), each
architecture's own batch-norm momentum, bf16; MobileNet-V3 takes this SGD recipe too, since its own
600-epoch RMSprop recipe cannot fit 90 epochs), fine-tuning WILDS' iWildCam defaults (Adam, lr 3e-5,
no weight decay, batch 16, 12 epochs, 448 px, fp32). Scratch cells train with the fine-tuning recipe.
Embedded default (no --data-root), scaled for 2 CPU cores: two seeds (four trials per group), 32 px,
3 pre-training epochs with warm-up + cosine (vs 90 step), crop scale (0.5, 1) (vs 0.08), batch-norm
momentum 0.1, fine-tuning 4 epochs (vs 12) at lr 1e-3 (vs 3e-5) and batch 32, fp32. --smoke: 1
pre-training and 2 fine-tuning epochs, one architecture, one seed, two values, smaller data."""


def embedded_help(scaled: str) -> str:
    """A script's --help epilog: what its embedded default scales down (`scaled`), then the recipes."""
    return f"Embedded default: {scaled}\n\n{RECIPE_HELP}"


class SweepParser(argparse.ArgumentParser):
    """argparse with one-line errors (and the closest valid flag for a typo), no prefix matching."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        if message.startswith("unrecognized arguments:"):
            flags = [o for action in self._actions for o in action.option_strings]
            hints = []
            for arg in message.split(":", 1)[1].split():
                close = difflib.get_close_matches(arg.split("=")[0], flags, n=1)
                hints.append(f"{arg} (did you mean {close[0]}?)" if close else arg)
            message = f"unrecognized arguments: {' '.join(hints)}; see --help"
        self.exit(2, f"{self.prog}: error: {message}\n")


def _int_at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {value}")
        return value
    return parse


def _number(minimum: float, strict: bool) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number {'>' if strict else '>='} {minimum:g}, got {text!r}") from None
        if value < minimum or (strict and value == minimum):
            raise argparse.ArgumentTypeError(f"must be a number {'>' if strict else '>='} {minimum:g}, got {text}")
        return value
    return parse


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


def parser(description: str, epilog: str | None = None) -> SweepParser:
    p = SweepParser(description=description, epilog=epilog)
    p.add_argument("--data-root", metavar="DIR", help="folder holding the real datasets; omit for the embedded default")
    p.add_argument("--storage-path", metavar="PATH",
                   help="where sweeps are stored (default $SWEEPS_STORAGE or ~/robustness_sweeps)")
    p.add_argument("--address", help="Ray cluster address, e.g. 'auto' on a cluster started with ray up")
    p.add_argument("--archs", type=_names, metavar="A,B", help="architectures (torchvision or open_clip names), "
                   "replacing the sweep's")
    p.add_argument("--sources", type=_names, metavar="S,T", help="run only these of the sweep's pre-training sources")
    p.add_argument("--targets", type=_names, metavar="T,U", help="run only these of the sweep's fine-tuning targets")
    p.add_argument("--values", type=_values, metavar="V,W",
                   help="run only these of the sweep's intervention values (JSON scalars: 25000, 0.33, animal)")
    p.add_argument("--seeds", type=_int_at_least(1), metavar="N", help="number of seeds per cell (default: the sweep's)")
    p.add_argument("--weights", metavar="[SOURCE:]ARCH=PATH",
                   help="start the cells of (SOURCE, ARCH) that pre-train from a local checkpoint instead (`full` "
                        "cells: a torchvision state dict; `clip` cells: an open_clip checkpoint); comma-separated; "
                        "SOURCE defaults to the sweep's first source; loaded with weights_only=True")
    p.add_argument("--cpus-per-trial", type=_number(0, strict=True), default=1.0, metavar="N", help="(default 1)")
    p.add_argument("--gpus-per-trial", type=_number(0, strict=False), default=0.0, metavar="F",
                   help="GPUs per trial; fractions share a GPU between trials (default 0)")
    p.add_argument("--deterministic", action="store_true",
                   help="deterministic kernels; no cudnn.benchmark, TF32 or torch.compile (slower; recorded per cell)")
    p.add_argument("--compile", action="store_true", help="torch.compile every model (pays off on GPUs; recorded per cell)")
    p.add_argument("--fresh", action="store_true", help="move the old sweep directory aside and start over")
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
                        for t in spec.all_targets()[:SMOKE_TARGETS])
        spec = replace(spec, smoke=True, archs=spec.archs[:1], seeds=1, arms=arms, intervention="", values=(),
                       targets=targets, recipe=SMOKE_RECIPE,
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


def sweep_main(build: Callable[[argparse.Namespace], SweepSpec], description: str, argv=None,
               epilog: str | None = None, report_options: dict | None = None) -> int:
    """Entry point of a sweep script: `build(args)` returns the spec for the given flags.

    `report_options` are passed to the report (e.g. `{"metric": "acc"}` where the paper plots accuracy).
    """
    from analysis.report import write_report
    from engine.runner import RunOptions, run_sweep
    from engine.speed import Speed

    args = parser(description, epilog).parse_args(argv)
    warnings.formatwarning = lambda message, category, *rest, **kw: f"warning: {message}\n"
    try:
        options = RunOptions(data_root=args.data_root, storage_path=args.storage_path, address=args.address,
                             cpus_per_trial=args.cpus_per_trial, gpus_per_trial=args.gpus_per_trial,
                             fresh=args.fresh, dry_run=args.dry_run,
                             speed=Speed(deterministic=args.deterministic, compile=args.compile))
        spec = apply_flags(build(args), args)
        directory = run_sweep(spec, options)
    except (ValueError, OSError, RuntimeError) as error:  # our one-line errors; Tune's own are raised as-is
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.dry_run:
        return 0
    print(f"results: {directory}")
    if not args.no_report:
        report = write_report([directory], out_dir=directory / "report", **(report_options or {}))
        print(f"report: {report}")
    return 0
