"""Wall time of N cells through `run_sweep` (Ray Tune) vs the same cells in a plain loop in one process.

The cells are the embedded default's `full` baseline with a larger source (pre-train resnet18 on
13,000 synthnet images for 3 epochs, fine-tune 4 epochs on synthcam, evaluate every epoch), one per
seed, about a minute each on two idle cores (the goal is stated for 60-second cells). Both sides use the same CPUs (default: every core) and
run one cell at a time (the sweep with `max_concurrent=1`); the plain loop runs the cells as a
script would, with the same loops, loaders and thread settings but no Ray, no Tune, no checkpoints,
no pre-trained cache. `--quick` runs tiny cells on 1 CPU (FFCV compiles a 1-CPU pipeline without
numba's parallel passes, several seconds faster per loader): it only checks that the script runs.

The headline is what the sweep adds to each cell once its fixed costs are paid: Tune's cost of a
trial in a reused actor (from no-op trials) plus the extra time inside each later trial (Tune's
`time_total_s` against the same cell's plain time: per-epoch checkpoints, reports, the pre-trained
cache), as a fraction of the cell. Each later cell runs plain before and after the sweep and is
compared with the mean of the two: on a shared machine the speed drifts by up to ~20% over
minutes, more than the overhead measured. The fixed costs are printed apart: per sweep (validation, Ray
start and stop, Tune and the first actor's start and imports, the first trial's warm-up) and
FFCV's JIT per loader (both sides pay it once per process, file and pipeline), with the whole
sweep's overhead at this N.

    python benchmarks/tune_overhead.py [--cells 2] [--cpus N] [--quick]
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

from common import headline, isolate_ray, stopwatch

GOAL = 0.05


def spec_for(args):
    from engine import EMBEDDED_RECIPE, SweepSpec
    from engine.cli import SMOKE_RECIPE, SMOKE_SOURCE_OPTIONS, SMOKE_TARGET_OPTIONS

    if args.quick:
        return SweepSpec(name="tune_overhead", sources=("synthnet",), archs=("mobilenet_v3_small",),
                         baselines=("full",), seeds=args.cells, recipe=SMOKE_RECIPE,
                         source_options={"synthnet": SMOKE_SOURCE_OPTIONS["synthnet"]},
                         target_options=SMOKE_TARGET_OPTIONS["synthcam"])
    # 13,000 images (vs the embedded 4,000): about a minute per cell on two idle cores (6,500 took 30-43 s)
    return SweepSpec(name="tune_overhead", sources=("synthnet",), archs=("resnet18",), baselines=("full",),
                     seeds=args.cells, recipe=EMBEDDED_RECIPE, source_options={"synthnet": {"images_per_class": 260}})


def plain_cell(config: dict, cpus: int) -> None:
    """One cell as a plain PyTorch script would run it: pre-train, swap the head, fine-tune, evaluate each epoch."""
    import torch

    from datasets import get_source
    from datasets.interventions import build_subset
    from datasets.storage.loaders import shared_loader
    from engine.archs import build_model, replace_head
    from engine.inputs import FinetuneInputs
    from engine.loops import (eval_batch_size, evaluate, finetune_optimizer, grad_scaler, pretrain_optimizer,
                              train_epoch)
    from engine.speed import Speed

    cpu = torch.device("cpu")
    inputs = FinetuneInputs.from_config(config)
    pre = inputs.pretrained
    src = get_source(pre.source, **pre.options())
    subset = build_subset(src, pre.intervention, pre.value, seed=pre.seed, **pre.params())
    train = shared_loader(src.beton("train", pre.resolution), pre.batch_size, pre.resolution, cpus, train=True,
                          indices=subset.indices, seed=pre.seed, crop_scale=pre.crop_scale)
    val = shared_loader(src.beton(src.holdout_split, pre.resolution), eval_batch_size(pre.batch_size), pre.resolution,
                        cpus, train=False, crop_ratio=pre.eval_crop)
    torch.manual_seed(pre.seed)
    model = Speed().prepare(build_model(pre.arch, subset.num_classes, pre.resolution, pre.bn_momentum), cpu)
    optimizer, scheduler = pretrain_optimizer(model, pre, len(train))
    for epoch in range(pre.epochs):
        train.next_epoch = epoch
        train_epoch(model, train, optimizer, scheduler, torch.as_tensor(subset.label_map), cpu, pre.precision,
                    grad_scaler(cpu, pre.precision))
        evaluate(model, {"pretrain_val": val}, cpu, subset.label_map, precision=pre.precision)

    target = get_source(inputs.target_source, **inputs.options())
    res = inputs.resolution
    model = Speed().prepare(replace_head(model, inputs.arch, target.num_classes), cpu)
    train = shared_loader(target.beton("train", res), inputs.batch_size, res, cpus, train=True, seed=inputs.seed)
    sets = target.evaluation_sets()
    loaders = {s: shared_loader(target.beton(s, res), eval_batch_size(inputs.batch_size), res, cpus, train=False)
               for s in dict.fromkeys(s for s, _ in sets.values())}
    optimizer, scheduler = finetune_optimizer(model, inputs, len(train))
    for epoch in range(inputs.epochs):
        train.next_epoch = epoch
        train_epoch(model, train, optimizer, scheduler, None, cpu, inputs.precision)
        evaluate(model, loaders, cpu, sets=sets, precision=inputs.precision)


_KEEP = []  # numba's finalizers print KeyErrors when FFCV's compiled loaders are collected: keep them


def jit_seconds(beton: Path, resolution: int, cpus: int, train: bool) -> float:
    """FFCV's compilation of a new loader: its first batch minus a compiled batch."""
    from datasets.storage.loaders import make_loader

    loader = make_loader(beton, 32, resolution, cpus, train=train, crop_scale=0.5 if train else None)
    _KEEP.append(loader)
    with stopwatch() as first:
        next(iter(loader))
    with stopwatch() as again:
        next(iter(loader))
    return first() - again()


def noop_tune_seconds(trials: int, cpus: int, storage: Path) -> float:
    """Wall time of a Tune run of `trials` no-op trials of `cpus` CPUs each, one at a time in a reused actor
    (Ray already up).

    Each imports what our trainable imports (torch, FFCV, the engine): a new actor pays that once.
    """
    from ray import tune

    def noop(config):
        import engine.trainable  # noqa: F401

        tune.report({"done": 1})

    tuner = tune.Tuner(tune.with_resources(noop, {"cpu": cpus}), param_space={"i": tune.grid_search(list(range(trials)))},
                       tune_config=tune.TuneConfig(reuse_actors=True, max_concurrent_trials=1),
                       run_config=tune.RunConfig(name=f"noop-{trials}", storage_path=str(storage), verbose=0))
    with stopwatch() as elapsed:
        tuner.fit()
    return elapsed()


def in_trial_seconds(sweep: Path) -> dict[str, tuple[int, float]]:
    """Per cell id: (when its trial last reported, seconds inside our trainable: Tune's `time_total_s`)."""
    out = {}
    for result in sweep.glob("exp-*/cell-*/result.json"):
        rows = [json.loads(line) for line in result.read_text().splitlines() if line.strip()]
        out[result.parent.name.removeprefix("cell-")] = (rows[-1]["timestamp"], rows[-1]["time_total_s"])
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cells", type=int, default=2, help="cells (seeds of the full baseline; at least 2, default 2)")
    p.add_argument("--cpus", type=int, default=None, help="CPUs of each trial and of the plain loop (default: every "
                   "core; 1 with --quick)")
    p.add_argument("--quick", action="store_true", help="tiny cells: checks that the benchmark runs")
    args = p.parse_args(argv)
    if args.cells < 2:
        p.error("--cells must be at least 2: the first cell of an actor is measured apart")
    if args.cpus is None:
        args.cpus = 1 if args.quick else os.cpu_count() or 1
    isolate_ray()

    import ray

    from engine.runner import RunOptions, run_sweep, validate
    from engine.spec import cells
    from engine.threads import set_trial_threads

    spec = spec_for(args)
    grid = cells(spec)
    with tempfile.TemporaryDirectory(prefix="bench-tune-") as tmp:
        tmp = Path(tmp)
        options = RunOptions(storage_path=str(tmp / "sweep"), cpus_per_trial=args.cpus, verbose=0,
                             max_concurrent=1)  # one cell at a time, as the plain loop
        with stopwatch() as validate_s:
            plan = validate(spec, options)
        # the .beton files exist before either side is timed (run_sweep writes missing ones first)
        for src, res in [*((t, spec.recipe.finetune_resolution) for t in plan.targets.values()),
                         *((s, spec.recipe.pretrain_resolution) for s in plan.sources.values())]:
            for split in src.splits:
                src.beton(split, res, num_workers=os.cpu_count() or 1)
        print(f"tune_overhead: {len(grid)} cells ({grid[0]['arch']}, full synthnet -> synthcam), "
              f"{args.cpus} CPUs per trial on {os.cpu_count()} cores", flush=True)

        set_trial_threads(args.cpus)
        import datasets.storage.loaders  # noqa: F401  (FFCV: imported by both sides before anything is timed)

        plain = {}
        for config in grid:
            with stopwatch() as cell_s:
                plain_cell(config, args.cpus)
            plain[config["cell_id"]] = cell_s()
        target = next(iter(plan.targets.values()))
        jit_train = jit_seconds(target.beton("train", spec.recipe.finetune_resolution), 32, args.cpus, True)
        jit_eval = jit_seconds(target.beton("id_test", spec.recipe.finetune_resolution), 32, args.cpus, False)
        with stopwatch() as sweep_s:
            sweep_dir = run_sweep(spec, options)
        inside = in_trial_seconds(sweep_dir)
        # this machine's speed drifts by up to ~20% over minutes (a shared VM): the later cells run
        # plain again after the sweep, and each is compared with the mean of its two plain runs
        order = sorted(inside, key=lambda c: inside[c][0])  # the trials in the order they ran (one at a time)
        plain_after = {}
        for cell_id in order[1:]:
            with stopwatch() as cell_s:
                plain_cell(next(c for c in grid if c["cell_id"] == cell_id), args.cpus)
            plain_after[cell_id] = cell_s()

        # one Ray instance, started and stopped as run_sweep does (dashboard on), runs the no-op trials
        # in between: its start and stop are timed, the no-op runs apart
        with stopwatch() as start_s:
            ray.init(include_dashboard=True, dashboard_host="127.0.0.1", configure_logging=False, log_to_driver=False)
        one = noop_tune_seconds(1, args.cpus, tmp / "noop")
        three = noop_tune_seconds(3, args.cpus, tmp / "noop")
        with stopwatch() as stop_s:
            ray.shutdown()

    tune_per_trial = max(0.0, (three - one) / 2)
    # cells after the first ran in an actor that had run one: what every further cell of a sweep costs
    later = order[1:]
    plain_mean = {c: (plain[c] + plain_after[c]) / 2 for c in later}
    per_cell = sum(inside[c][1] - plain_mean[c] for c in later) / len(later) + tune_per_trial
    cell_s = sum(plain_mean.values()) / len(later)
    plain_total, sweep_total = plain[order[0]] + sum(plain_mean.values()), sweep_s()
    first_extra = inside[order[0]][1] - plain[order[0]]
    per_sweep = sweep_total - plain_total - per_cell * len(grid)
    print(f"  wall: run_sweep {sweep_total:.1f} s | plain loop {plain_total:.1f} s (cells "
          f"{', '.join(f'{plain_mean.get(c, plain[c]):.1f}' for c in order)} s) | whole-sweep overhead "
          f"{(sweep_total - plain_total) / plain_total:.1%} at {len(grid)} cells", flush=True)
    print(f"  later cells plain before / after the sweep: "
          f"{', '.join(f'{plain[c]:.1f} / {plain_after[c]:.1f}' for c in later)} s (the machine's drift); "
          "each is compared with the mean of its two", flush=True)
    print(f"  inside the trials: {', '.join(f'{inside[c][1]:.1f}' for c in order)} s (Tune's time_total_s, same "
          f"cells and order); outside them: {sweep_total - sum(t for _, t in inside.values()):.1f} s", flush=True)
    print(f"  fixed per sweep: {per_sweep:.1f} s, of which validate {validate_s():.1f} s, Ray start/stop {start_s() + stop_s():.1f} s, "
          f"Tune + first actor start + its imports {one - tune_per_trial:.1f} s (no-op trials), and the first "
          f"trial's warm-up beyond the plain loop's first cell {first_extra:.1f} s (WordNet, dataset modules, "
          "numba's first compilations: the plain process had them from validating)", flush=True)
    print(f"  FFCV JIT of one more loader (numba warm): {jit_train:.1f} s train pipeline / {jit_eval:.1f} s eval "
          "pipeline, once per process, file and pipeline, on both sides", flush=True)
    print(f"  fixed per cell: {per_cell:.2f} s on a {cell_s:.1f} s cell = Tune with a reused actor "
          f"{tune_per_trial:.2f} s + inside the trial {per_cell - tune_per_trial:.2f} s (checkpoint every epoch, "
          "reports, pre-trained cache)", flush=True)
    headline("tune_overhead", per_cell / cell_s, GOAL, higher_is_better=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
