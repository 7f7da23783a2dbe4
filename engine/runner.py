"""`run_sweep`: validate a sweep, then run (or resume) its cells as Tune trials.

Storage layout (DESIGN.md): a sweep lives in `<storage>/<sweep>/` (`-smoke` appended for smoke
runs). Each run first restores the sweep's unfinished Tune experiments (`exp-000`, ...); cells
that are in none of them run in a new experiment beside them, because `Tuner.restore` cannot add
trials. `--fresh` renames the old directory to `<sweep>.old-<timestamp>`.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from engine.archs import check_arch
from engine.spec import SweepSpec, cells

if TYPE_CHECKING:
    from datasets import Source

DEFAULT_STORAGE = "~/robustness_sweeps"
# Snapshot the experiment state (and upload results) after every step instead of Tune's
# adaptive >= 10 s: with the default, a driver SIGKILLed soon after a cell finished left a snapshot
# that did not know it, and the re-run retrained its last epoch (measured; README "Resume").
# The trainable closes the remaining window (engine.trainable._resume_point).
TUNE_ENV = {"TUNE_GLOBAL_CHECKPOINT_S": "0", "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0"}


class SweepError(ValueError):
    """A sweep that cannot start; one line that names the field and the fix."""


@dataclass
class RunOptions:
    data_root: str | None = None
    storage_path: str | None = None
    address: str | None = None
    cpus_per_trial: float = 1
    gpus_per_trial: float = 0
    fresh: bool = False
    dry_run: bool = False
    max_failures: int = 2
    verbose: int = 1


def storage_root(options: RunOptions) -> Path:
    raw = options.storage_path or os.environ.get("SWEEPS_STORAGE") or DEFAULT_STORAGE
    if "://" in raw:
        raise SweepError(
            f"--storage-path {raw}: cloud URIs are not supported in this version; use a local or shared "
            "filesystem path (e.g. an NFS/EFS mount on a cluster)"
        )
    return Path(raw).expanduser().resolve()


def sweep_dir(spec: SweepSpec, options: RunOptions) -> Path:
    return storage_root(options) / (spec.name + ("-smoke" if spec.smoke else ""))


def validate(spec: SweepSpec, options: RunOptions) -> tuple[list[dict], Source, dict[str, Source], dict[str, int]]:
    """Everything that can be checked before Ray starts: archs, sources, subsets, resources.

    Returns the cells, the target, the pre-training sources (built once, reused by the run) and
    each cell's pre-training subset size in images (by cell id; 0 for scratch).
    """
    from datasets import get_source
    from datasets.interventions import build_subset

    if options.data_root is not None and not Path(options.data_root).is_dir():
        raise SweepError(f"--data-root {options.data_root}: no such directory; point it at the folder holding the datasets")
    if options.cpus_per_trial <= 0 or options.gpus_per_trial < 0:
        raise SweepError("--cpus-per-trial must be > 0 and --gpus-per-trial >= 0")
    grid = cells(spec)
    if not grid:
        raise SweepError(f"sweep '{spec.name}' has no cells: give it values, sources and archs")
    for cell in grid:
        check_arch(cell["arch"], cell["finetune_resolution"])
        if cell["pretrain_epochs"]:
            check_arch(cell["arch"], cell["pretrain_resolution"])
    target = get_source(spec.target, options.data_root, **spec.target_options)
    sources = {name: get_source(name, options.data_root, **spec.source_options.get(name, {})) for name in spec.sources}
    if options.dry_run:  # a preview must not decode a million images: count every listed file instead
        for src in (target, *sources.values()):
            if hasattr(src, "unchecked"):
                src.unchecked = True
    pretrain_images = {cell["cell_id"]: 0 for cell in grid}
    for cell in grid:
        if cell["source"] in sources:
            subset = build_subset(sources[cell["source"]], cell["intervention"], cell["value"], seed=cell["seed"],
                                  **json.loads(cell["intervention_params"]))
            pretrain_images[cell["cell_id"]] = len(subset.indices)
    return grid, target, sources, pretrain_images


def image_passes(cell: dict, pretrain_images: int, finetune_images: int, eval_images: int) -> float:
    """Rough cost of a cell in training-image passes (an evaluation pass counts a third)."""
    return cell["pretrain_epochs"] * pretrain_images + cell["finetune_epochs"] * (finetune_images + eval_images / 3)


def target_sizes(target: Source) -> tuple[int, int]:
    """(training images, evaluated images) of the fine-tuning target."""
    return len(target.labels("train")), sum(len(target.labels(s)) for s in target.eval_splits.values())


def print_dry_run(spec: SweepSpec, grid: list[dict], target: Source, sources: dict[str, Source],
                  pretrain_images: dict[str, int]) -> None:
    sizes = target_sizes(target)
    print(f"{'cell_id':16}  {'source':10} {'intervention':12} {'value':>8} {'pretrain imgs':>13}  {'arch':20} seed")
    for c in grid:
        print(f"{c['cell_id']:16}  {c['source']:10} {c['intervention']:12} {str(c['value']):>8} "
              f"{pretrain_images[c['cell_id']]:>13}  {c['arch']:20} {c['seed']}")
    passes = sum(image_passes(c, pretrain_images[c["cell_id"]], *sizes) for c in grid)
    pending = [s.name for s in (target, *sources.values()) if getattr(s, "unchecked", False)
               and not all(s.skipped_log(split).exists() for split in s.splits)]
    if pending:
        print(f"not yet checked for unreadable images, so counted with every listed file: {', '.join(pending)} "
              "(`python -m datasets prepare SOURCE --data-root DIR` checks and converts them)")
    print(f"{len(grid)} cells in '{spec.name}'; ~{passes / 1e6:.2f} M image passes "
          f"(at ~200 images/s per CPU core at 32 px: ~{passes / 200 / 3600:.2f} core-hours; cells that share a "
          "pre-trained model pay for it once, so this is an upper bound)")


def _lock(directory: Path) -> Path:
    """Refuse to run two drivers on one sweep; a lock left by a dead driver is taken over."""
    import psutil

    lock = directory / ".driver.json"
    try:
        info = json.loads(lock.read_text())
    except (OSError, json.JSONDecodeError):
        info = None
    if info and _alive(info.get("pid"), info.get("started")):
        raise SweepError(f"{directory}: another driver (pid {info['pid']}) is running this sweep; "
                         "wait for it or stop it, then re-run")
    if info:
        _kill_stale_ray(info.get("ray_pids", []))
    me = psutil.Process()
    lock.write_text(json.dumps({"pid": me.pid, "started": me.create_time(), "ray_pids": []}))
    return lock


def _alive(pid, started) -> bool:
    """Is `pid` the same live process that wrote the lock (not a recycled pid)?"""
    import psutil

    try:
        return pid is not None and abs(psutil.Process(pid).create_time() - (started or 0)) < 1
    except psutil.NoSuchProcess:
        return False


def _kill_stale_ray(pids: list[int]) -> None:
    """Stop the Ray processes a killed driver started: they would keep writing into the sweep."""
    import psutil

    procs = []
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            procs += proc.children(recursive=True) + [proc]
        except psutil.NoSuchProcess:
            continue
    for proc in procs:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(procs, timeout=10)


def _record_ray_pids(lock: Path) -> None:
    """Remember the local Ray processes this driver started, for a re-run after a SIGKILL."""
    import ray._private.worker as ray_worker

    node = getattr(ray_worker, "_global_node", None)
    if node is None:  # connected to an existing cluster (--address): its processes are not ours
        return
    pids = [info.process.pid for infos in node.all_processes.values() for info in infos if info.process]
    lock.write_text(json.dumps({**json.loads(lock.read_text()), "ray_pids": pids}))


def _experiments(directory: Path) -> list[Path]:
    return sorted(p for p in directory.glob("exp-[0-9][0-9][0-9]") if p.is_dir())


def _cells_in(experiment: Path) -> set[str]:
    """Cell ids of every trial Tune's latest snapshot of `experiment` knows, pending ones included."""
    states = sorted(experiment.glob("experiment_state-*.json"))
    if not states:
        return set()
    trials = json.loads(states[-1].read_text())["trial_data"]
    return {json.loads(state)["config"]["cell_id"] for state, _ in trials}


def trial_dirname(trial) -> str:
    return f"cell-{trial.config['cell_id']}"


def trial_name(trial) -> str:
    c = trial.config
    return f"{c['arch']}-{c['intervention']}-{c['value']}-s{c['seed']}"


def run_sweep(spec: SweepSpec, options: RunOptions | None = None) -> Path:
    """Run or resume every cell of `spec`; returns the sweep directory."""
    options = options or RunOptions()
    grid, target, sources, pretrain_images = validate(spec, options)
    if options.dry_run:
        print_dry_run(spec, grid, target, sources, pretrain_images)
        return sweep_dir(spec, options)

    directory = sweep_dir(spec, options)
    if options.fresh and directory.exists():
        old = directory.with_name(f"{directory.name}.old-{time.strftime('%Y%m%d-%H%M%S')}")
        directory.rename(old)
        print(f"--fresh: moved the previous sweep to {old}")
    directory.mkdir(parents=True, exist_ok=True)
    lock = _lock(directory)
    try:
        return _run(spec, grid, target, sources, pretrain_images, options, directory, lock)
    finally:
        lock.unlink(missing_ok=True)


def _run(spec: SweepSpec, grid: list[dict], target: Source, sources: dict[str, Source],
         pretrain_images: dict[str, int], options: RunOptions, directory: Path, lock: Path) -> Path:
    for key, value in TUNE_ENV.items():
        os.environ.setdefault(key, value)
    import ray
    from ray import tune
    from ray.tune.search.basic_variant import BasicVariantGenerator

    from datasets.storage.beton import cache_root
    from engine.provenance import git_sha
    from engine.trainable import FAULT_ENV, RunContext, train_cell

    # Write the data files once here (with a progress bar) rather than in racing trials.
    for split in target.splits:
        target.beton(split, spec.recipe.finetune_resolution, num_workers=int(options.cpus_per_trial))
    for src in sources.values():
        for split in ("train", src.holdout_split):  # what pre-training reads (DomainNet evaluates on "test")
            src.beton(split, spec.recipe.pretrain_resolution, num_workers=int(options.cpus_per_trial))

    context = RunContext(storage=str(storage_root(options)), data_root=options.data_root,
                         cache_dir=str(cache_root()), git_sha=git_sha())
    trainable = tune.with_resources(tune.with_parameters(train_cell, context=context),
                                    {"cpu": options.cpus_per_trial, "gpu": options.gpus_per_trial})
    ray.init(address=options.address, include_dashboard=True, dashboard_host="127.0.0.1",
             runtime_env={"env_vars": {**TUNE_ENV, "SWEEPS_CACHE": context.cache_dir,
                                       FAULT_ENV: os.environ.get(FAULT_ENV, "")}},
             log_to_driver=options.verbose > 1, configure_logging=False)
    _record_ray_pids(lock)
    print(f"Ray dashboard: http://127.0.0.1:8265  (TensorBoard: tensorboard --logdir {directory})")
    try:
        run_config = dict(
            storage_path=str(directory),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            failure_config=tune.FailureConfig(max_failures=options.max_failures),
            verbose=options.verbose,
        )
        known: set[str] = set()
        for experiment in _experiments(directory):
            if not tune.Tuner.can_restore(experiment):
                # Killed before its first snapshot: nothing in it can be restored; its cells rerun.
                experiment.rename(experiment.with_name(f"{experiment.name}.unrestorable-{int(time.time())}"))
                continue
            print(f"resuming {experiment}")
            tune.Tuner.restore(str(experiment), trainable, resume_unfinished=True, resume_errored=True).fit()
            known |= _cells_in(experiment)
        # Longest cells first: with a few trial slots this shortens the sweep's tail.
        sizes = target_sizes(target)
        todo = sorted((c for c in grid if c["cell_id"] not in known), key=lambda c: -image_passes(c, pretrain_images[c["cell_id"]], *sizes))
        if todo:
            name = f"exp-{len(_experiments(directory)):03d}"
            while (directory / name).exists():
                name = f"exp-{int(name[4:]) + 1:03d}"
            print(f"running {len(todo)} new cells of {len(grid)} in {directory / name}")
            tuner = tune.Tuner(
                trainable,
                # Each cell is a preset point; the placeholders make every key a known search key.
                param_space={key: None for key in todo[0]},
                tune_config=tune.TuneConfig(
                    search_alg=BasicVariantGenerator(points_to_evaluate=todo),
                    num_samples=len(todo),
                    # A finished trial's process serves the next one: no new interpreter, imports
                    # and FFCV/numba compilation per cell (every trial seeds and sizes itself).
                    reuse_actors=True,
                    trial_dirname_creator=trial_dirname,
                    trial_name_creator=trial_name,
                ),
                run_config=tune.RunConfig(name=name, **run_config),
            )
            tuner.fit()
    finally:
        ray.shutdown()
    return directory
