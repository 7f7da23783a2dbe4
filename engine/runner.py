"""`run_sweep`: validate a sweep, then run (or resume) its cells as Tune trials.

Storage layout (DESIGN.md): a sweep lives in `<storage>/<sweep>/` (`-smoke` appended for smoke
runs); `<storage>` is a local or shared path or an `s3://` URI (`datasets.storage.location`). Each
run first restores the sweep's unfinished Tune experiments (`exp-000`, ...); cells that are in none
of them run in a new experiment beside them, because `Tuner.restore` cannot add trials. A sweep whose cells have all finished (Tune says so and every fine-tuning row is on disk)
is not started again: Ray is not even started. `--fresh` renames the old directory to
`<sweep>.old-<timestamp>`, once `RunOptions.confirm_fresh` agrees.

While Tune runs, the console shows one row per cell (`engine.console`), TensorBoard gets one run
per cell (`engine.tensorboard`), and Ctrl-C stops the trials at their last checkpoint and raises
`SweepInterrupted` (`engine.interrupt`).
"""
from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

from engine.archs import check_arch
from engine.cost import SOURCE_NOTE, estimate
from engine.driver_lock import LOCK_NAME, DriverLock, DriverLockError, record_ray_pids, take_lock
from engine.speed import Speed
from engine.interrupt import SweepInterrupted
from engine.spec import SweepSpec, cells, describe_cell
from datasets.storage.location import Location, StorageError
from datasets.storage.shared_cache import STORE_ENV
from engine.sweep_dir import cell_errors, cell_status, configs_in, experiments, report_other_schemas

if TYPE_CHECKING:
    from datasets import Source

DEFAULT_STORAGE = "~/robustness_sweeps"
# Snapshot the experiment state (and upload results) every 2 s instead of Tune's adaptive >= 10 s.
# Tune also snapshots right after every trial checkpoint (every fine-tuning epoch), because the run
# keeps one checkpoint per trial (`num_to_keep=1`). With the default, a driver SIGKILLed soon after
# a cell finished left a snapshot that did not know it (measured; README "Resume"); the trainable
# closes the remaining window (engine.trainable._resume_point). Not every step (`0`): Tune's loop
# steps ~10 times a second, so the driver rewrote and re-uploaded its files without pause, which
# took CPU from the trials (benchmarks/tune_overhead.py: 0.24 of a cell, 0.04-0.06 at 2 s).
# Both stay overridable from the environment.
TUNE_ENV = {"TUNE_GLOBAL_CHECKPOINT_S": "2", "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0"}
# The driver's own output: Tune's legacy output engine is the one that honours a custom progress
# reporter (`engine.console`); Tune's automatic loggers are replaced by the JSON and CSV ones
# (what `analysis` reads) plus per-cell TensorBoard runs, instead of TensorBoard runs per trial dir.
# Run as a Ray job (`ray job submit --runtime-env-json ...`), the job's environment variables and
# the sweep's are combined instead of refused when both name one (the driver's values come from
# the job's environment anyway).
DRIVER_ENV = {"RAY_AIR_NEW_OUTPUT": "0", "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1", "RAY_OVERRIDE_JOB_RUNTIME_ENV": "1"}

__all__ = ["DriverLockError", "RunOptions", "SweepError", "SweepInterrupted", "cell_errors", "cell_status", "report_other_schemas",
           "run_plan", "run_sweep", "sweep_dir", "validate"]


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
    max_failures: int = 2       # retries of a failed trial, each from its last epoch checkpoint (Tune FailureConfig)
    max_concurrent: int | None = None   # at most this many trials at once (None: as many as resources fit)
    pretrain_wait_s: float = 24 * 3600  # a cell waiting for another's pre-training of the same model gives up after this
    verbose: int = 1            # 0: silent; 1: the cell table; 2: also the trials' own output
    # Called as confirm_fresh(directory, what it holds) before --fresh moves an existing sweep aside;
    # raises to refuse. None: move it (the caller already decided).
    confirm_fresh: Callable[[Path, str], None] | None = None
    speed: Speed = Speed()        # --deterministic / --compile: recorded per cell, not part of its id


@dataclass
class Plan:
    """A validated sweep: its cells and the sources they read, built once before Ray starts."""

    grid: list[dict]
    targets: dict[str, Source]                  # by target name
    sources: dict[str, Source]                  # by pre-training source name
    subsets: dict[str, tuple[int, int] | None]  # by cell id: (images, classes) of its pre-training subset
    missing: list[str] = field(default_factory=list)   # datasets not under --data-root (dry runs only)
    dropped: list[str] = field(default_factory=list)   # grid entries a source cannot fill


def storage_root(options: RunOptions) -> Location:
    """`--storage-path`, else `$SWEEPS_STORAGE`, else ~/robustness_sweeps: a path or an `s3://` URI."""
    raw = options.storage_path or os.environ.get("SWEEPS_STORAGE") or DEFAULT_STORAGE
    try:
        return Location.of(raw)
    except StorageError as error:
        raise SweepError(f"--storage-path {error}") from None


def sweep_location(spec: SweepSpec, options: RunOptions) -> Location:
    return storage_root(options) / (spec.name + ("-smoke" if spec.smoke else ""))


def sweep_dir(spec: SweepSpec, options: RunOptions) -> Path | str:
    """The sweep's directory: a Path on a filesystem, the URI string on object storage."""
    return _public(sweep_location(spec, options))


def _public(location: Location) -> Path | str:
    return location.uri if location.remote else location.path


def _open(name: str, registered: str, options: dict, run: RunOptions, missing: list[str]) -> Source | None:
    """The source, or None (noted in `missing`) when a dry run finds its data absent."""
    from datasets import SourceError, get_source

    try:
        return get_source(registered, run.data_root, **options)
    except SourceError as error:
        if not run.dry_run:
            raise
        missing.append(f"{name}: {error}")
        return None


def validate(spec: SweepSpec, options: RunOptions) -> Plan:
    """Everything that can be checked before Ray starts: archs, precisions, sources, subsets, resources.

    Builds every target and pre-training source once (the run reuses them) and every cell's
    pre-training subset. A grid entry a source cannot fill (`InsufficientData`, e.g. 300K images
    over 250 drawn classes of which one holds fewer than 1,200) is dropped with a printed line;
    any other bad value is an error. With `--dry-run`, a dataset missing under `--data-root` is
    listed as missing instead of stopping the preview.
    """
    from datasets.interventions import InsufficientData, build_subset

    storage_root(options)  # a storage URI of an unsupported kind is refused before anything is built
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
        if not options.gpus_per_trial and "fp16" in (cell["pretrain_precision"], cell["finetune_precision"]):
            raise SweepError("the recipe's precision fp16 needs GPU trials (--gpus-per-trial > 0); on CPUs use bf16 or fp32")
    missing: list[str] = []
    targets = {t.name: _open(f"target {t.name}", t.registered, t.options, options, missing) for t in spec.all_targets()}
    trained = {c["source"] for c in grid if c["intervention"] != "scratch" and c["pretrain_weights"] is None}
    sources = {s: _open(f"source {s}", s, spec.source_options.get(s, {}), options, missing)
               for s in spec.pretraining_sources() if s in trained}
    targets = {k: v for k, v in targets.items() if v is not None}
    sources = {k: v for k, v in sources.items() if v is not None}
    if options.dry_run:  # a preview must not decode a million images: count every listed file instead
        for src in (*targets.values(), *sources.values()):
            if hasattr(src, "unchecked"):
                src.unchecked = True
    sizes: dict[str, tuple[int, int] | None] = {}
    built: dict[tuple, tuple[int, int] | None] = {}
    dropped: dict[tuple, tuple[str, set]] = {}
    for cell in grid:
        if cell["intervention"] == "scratch":
            sizes[cell["cell_id"]] = (0, 0)
            continue
        if cell["pretrain_weights"] is not None or cell["source"] not in sources:  # given weights; missing data
            sizes[cell["cell_id"]] = None
            continue
        entry = (cell["source"], cell["intervention"], json.dumps(cell["value"]), cell["intervention_params"])
        key = (*entry, cell["seed"])
        if key not in built:
            try:
                subset = build_subset(sources[cell["source"]], cell["intervention"], cell["value"],
                                      seed=cell["seed"], **json.loads(cell["intervention_params"]))
                built[key] = (len(subset.indices), subset.num_classes)
            except InsufficientData as error:
                built[key] = None
                dropped.setdefault(entry, (str(error), set()))[1].add(cell["seed"])
        sizes[cell["cell_id"]] = built[key]
    notes = []
    if dropped:
        for (source, intervention, value, params), (reason, seeds) in dropped.items():
            extra = "" if params == "{}" else f" {params}"
            note = (f"dropped from the grid: {source}/{intervention}={json.loads(value)}{extra} "
                    f"(seed {', '.join(map(str, sorted(seeds)))}): {reason}")
            print(note)
            notes.append(note)
        grid = [c for c in grid if (c["source"], c["intervention"], json.dumps(c["value"]), c["intervention_params"])
                not in dropped]
        if not any(c["intervention"] not in ("scratch", "full") for c in grid):
            raise SweepError(f"sweep '{spec.name}': every value of its interventions was dropped (the sources cannot "
                             f"fill them; first: {next(iter(dropped.values()))[0]})")
    return Plan(grid, targets, sources, sizes, missing, notes)


def _images(plan: Plan) -> dict[str, int]:
    """Pre-training images per cell id (0 where unknown: given weights, missing data)."""
    return {k: (v[0] if v else 0) for k, v in plan.subsets.items()}


def target_sizes(target: Source) -> tuple[int, int]:
    """(training images, evaluated images) of the fine-tuning target."""
    evaluated = sum(len(target.labels(s)) for s in dict.fromkeys(s for s, _ in target.evaluation_sets().values()))
    return len(target.labels("train")), evaluated


def print_dry_run(spec: SweepSpec, plan: Plan, options: RunOptions) -> None:
    sizes = {name: target_sizes(t) for name, t in plan.targets.items()}
    several = len(spec.all_targets()) > 1
    print(f"{'cell_id':16}  {'target'.ljust(23) if several else ''}{'source':16} {'intervention':12} {'value':>10} "
          f"{'pretrain imgs':>13} {'classes':>7}  {'arch':20} seed")
    for c in plan.grid:
        size = plan.subsets.get(c["cell_id"])
        images, classes = ("given", "-") if c["pretrain_weights"] else ("?", "?") if size is None else size
        where = f"{c['target']:<22} " if several else ""
        print(f"{c['cell_id']:16}  {where}{c['source']:16} {c['intervention']:12} {str(c['value']):>10} "
              f"{images:>13} {classes:>7}  {c['arch']:20} {c['seed']}")
    pending = [s.name for s in (*plan.targets.values(), *plan.sources.values()) if getattr(s, "unchecked", False)
               and not all(s.skipped_log(split).exists() for split in s.splits)]
    if pending:
        print(f"not yet checked for unreadable images, so counted with every listed file: {', '.join(pending)} "
              "(`python -m datasets prepare SOURCE --data-root DIR` checks and converts them)")
    for line in plan.missing:
        print(f"missing (not counted in the cost): {line}")
    cost = estimate(plan.grid, _images(plan), sizes)
    print(f"{len(plan.grid)} cells in '{spec.name}'; ~{cost['passes'] / 1e6:.2f} M image passes")
    print(f"  CPU: ~{cost['cpu_core_hours']:.2f} core-hours at ~200 images/s per core (the embedded 32-px models)")
    if options.data_root is not None:
        print(f"  GPU: ~{cost['gpu_hours']:.1f} GPU-hours; {SOURCE_NOTE}")
    print("  cells that share a pre-trained model pay for it once, so these are upper bounds")


def trial_dirname(trial) -> str:
    return f"cell-{trial.config['cell_id']}"


def trial_name(trial) -> str:
    return describe_cell(trial.config)


def run_sweep(spec: SweepSpec, options: RunOptions | None = None) -> Path | str:
    """Run or resume every cell of `spec`; returns the sweep directory.

    Raises `SweepInterrupted` when Ctrl-C stopped it (the unfinished cells keep their last epoch
    checkpoint; running it again resumes them).
    """
    options = options or RunOptions()
    return run_plan(spec, validate(spec, options), options)


def _holds(directory: Location) -> str:
    cells_on_disk = {c.name for e in directory.entries("exp-*", kind="dir") for c in e.entries("cell-*", kind="dir")}
    return f"{len(cells_on_disk)} cells' results" if cells_on_disk else "no results yet"


def run_plan(spec: SweepSpec, plan: Plan, options: RunOptions) -> Path | str:
    """`run_sweep` once `validate` has made the plan."""
    if options.dry_run:
        print_dry_run(spec, plan, options)
        return sweep_dir(spec, options)

    directory = sweep_location(spec, options)
    lock = take_lock(directory)  # before --fresh moves anything: a running driver keeps its directory
    try:
        if options.fresh and any(p.name != LOCK_NAME for p in directory.entries()):
            if options.confirm_fresh is not None:
                options.confirm_fresh(_public(directory), _holds(directory))
            old = directory.with_name(f"{directory.name}.old-{time.strftime('%Y%m%d-%H%M%S')}")
            directory.move_to(old)
            directory.mkdir()
            lock.moved_aside(old.path if not old.remote else old)
            print(f"--fresh: moved the previous sweep to {old}")
        status = cell_status(directory, plan.grid)
        if all(s == "finished" for s in status.values()):
            print(f"all {len(status)} cells already finished in {directory}; nothing to run")
            return _public(directory)
        return _public(_run(spec, plan, options, directory, lock))
    finally:
        lock.release()


@contextlib.contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the driver while a sweep runs, then put the old ones back."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _dashboard_line(url: str | None) -> str:
    """Where the Ray dashboard listens (the address Ray reports), and how to get its login token."""
    if not url:
        return "Ray dashboard: not running (Ray started without it)"
    url = url if "://" in url else f"http://{url}"
    token = os.environ.get("RAY_AUTH_MODE", "").lower() == "token"
    return f"Ray dashboard: {url}" + ("  (it asks for a token: `ray get-auth-token` prints it)" if token else "")


def tensorboard_dir(directory: Location) -> Path:
    """Where the driver writes TensorBoard runs: `<sweep>/tensorboard` on a filesystem; for a sweep on
    object storage a local folder (`$SWEEPS_CACHE/tensorboard/<sweep>`), uploaded to `<sweep>/tensorboard`
    as cells end."""
    from datasets.storage.beton import cache_root
    from engine.tensorboard import TENSORBOARD_DIR

    if not directory.remote:
        return directory.path / TENSORBOARD_DIR
    bucket, key = directory.bucket_and_key
    return cache_root() / TENSORBOARD_DIR / bucket / key


def _callbacks(directory: Location):
    """This run's Tune callbacks: the loggers `analysis` reads, per-cell TensorBoard runs, Ctrl-C.

    `RowLedger` comes first: it marks the replayed rows the loggers after it skip (`engine.row_ledger`)."""
    from engine.interrupt import InterruptWatch
    from engine.row_ledger import ProgressCsv, ResultJson, RowLedger
    from engine.tensorboard import TENSORBOARD_DIR, CellCurves

    watch = InterruptWatch()
    upload = directory / TENSORBOARD_DIR if directory.remote else None
    return [RowLedger(), ResultJson(), ProgressCsv(), CellCurves(tensorboard_dir(directory), upload), watch], watch


def _fit(tuner, watch) -> None:
    """`tuner.fit()`; `SweepInterrupted` when Ctrl-C ended it (Tune itself returns normally then)."""
    from engine.interrupt import keep_sigint_handler, quiet_tune_logs

    with keep_sigint_handler(), quiet_tune_logs():
        try:
            tuner.fit()
        except Exception:
            if watch.interrupted:  # what Tune raises while it stops is not the user's problem
                raise SweepInterrupted() from None
            raise
    if watch.interrupted:
        raise SweepInterrupted()


def data_store(options: RunOptions) -> str | None:
    """Where the driver shares the `.beton` files (`datasets.storage.shared_cache`): `$SWEEPS_BETON_STORE`,
    else `<storage>/betons` for a sweep on object storage (its nodes share no disk), else nowhere."""
    root = storage_root(options)
    return os.environ.get(STORE_ENV) or ((root / "betons").uri if root.remote else None)


def _share(source, split: str, beton: Path) -> None:
    """Publish a data file the trials read, and the image check's record of its split, to the store."""
    from datasets.storage.shared_cache import publish

    files = [Path(beton)]
    if hasattr(source, "skipped_log") and source.skipped_log(split).exists():
        files.append(source.skipped_log(split))
    for path in files:
        publish(path)


def _run(spec: SweepSpec, plan: Plan, options: RunOptions, directory: Location, lock: DriverLock) -> Location:
    for key, value in TUNE_ENV.items():
        os.environ.setdefault(key, value)
    with _environ(DRIVER_ENV):
        return _run_tune(spec, plan, options, directory, lock)


def _run_tune(spec: SweepSpec, plan: Plan, options: RunOptions, directory: Location, lock: DriverLock) -> Location:
    import ray
    from ray import tune
    from ray.job_config import JobConfig
    from ray.tune.search.basic_variant import BasicVariantGenerator

    from datasets.storage.beton import cache_root
    from engine.console import CellTable
    from engine.interrupt import quiet_tune_logs
    from engine.provenance import git_sha
    from engine.trainable import FAULT_ENV, RunContext, train_cell

    # Write the data files once here (with a progress bar, on every core: no trial runs yet) rather
    # than in racing trials, and share them through the store, if any, with nodes that lack them.
    workers = os.cpu_count() or 1
    store = data_store(options)
    with _environ({STORE_ENV: store} if store else {}):
        for target in plan.targets.values():
            for split in target.splits:
                _share(target, split, target.beton(split, spec.recipe.finetune_resolution, num_workers=workers))
        for src in plan.sources.values():
            for split in ("train", src.holdout_split):  # what pre-training reads (DomainNet evaluates on "test")
                _share(src, split, src.beton(split, spec.recipe.pretrain_resolution, num_workers=workers))

    stale = report_other_schemas(directory, storage_root(options))
    context = RunContext(storage=storage_root(options).uri, data_root=options.data_root,
                         cache_dir=str(cache_root()), git_sha=git_sha(),
                         weights=tuple((w.sha256, w.path) for w in spec.weights), speed=options.speed,
                         pretrain_wait_s=options.pretrain_wait_s)
    trainable = tune.with_resources(tune.with_parameters(train_cell, context=context),
                                    {"cpu": options.cpus_per_trial, "gpu": options.gpus_per_trial})
    ray_context = ray.init(
        address=options.address, include_dashboard=True, dashboard_host="127.0.0.1",
        # SWEEPS_CACHE is not forced on the workers: a node started with its own keeps it (trainable)
        runtime_env={"env_vars": {**TUNE_ENV, FAULT_ENV: os.environ.get(FAULT_ENV, ""),
                                  **({STORE_ENV: store} if store else {})}},
        # the dashboard's Jobs page names the job by this (a `ray job submit` gives its own metadata)
        job_config=JobConfig(metadata={"job_name": directory.name}),
        log_to_driver=options.verbose > 1, configure_logging=False)
    record_ray_pids(lock)
    if options.verbose:
        print(_dashboard_line(getattr(ray_context, "dashboard_url", None)))
        print(f"TensorBoard: tensorboard --logdir {tensorboard_dir(directory)}")
    try:
        table = CellTable(directory.name)

        def this_run(run_config) -> None:
            # Tune re-applies the run configuration pickled with an experiment when it is restored;
            # the callbacks and the table must be this run's (experiments older than them have none).
            run_config.callbacks, watch = _callbacks(directory)
            run_config.progress_reporter, run_config.verbose = table, min(options.verbose, 1)
            run_config.failure_config = tune.FailureConfig(max_failures=options.max_failures)
            table.watch = watch  # after Ctrl-C the table says "stopped", not "running"
            return watch

        known: set[str] = set()
        status = cell_status(directory, plan.grid)
        for experiment in experiments(directory):
            if experiment in stale:
                continue
            if not tune.Tuner.can_restore(experiment.uri):
                # Killed before its first snapshot: nothing in it can be restored; its cells rerun.
                experiment.move_to(experiment.with_name(f"{experiment.name}.unrestorable-{int(time.time())}"))
                continue
            held = {c["cell_id"] for c in configs_in(experiment)}
            known |= held
            if all(status[c] == "finished" for c in held & set(status)):
                continue  # the cells of this sweep in it are done: nothing to resume
            print(f"resuming {experiment}")
            with quiet_tune_logs():
                tuner = tune.Tuner.restore(experiment.uri, trainable, resume_unfinished=True, resume_errored=True)
            table.title = f"{directory.name}/{experiment.name}"
            _fit(tuner, this_run(tuner._local_tuner.get_run_config()))  # Ray 2.60: the restored run's config
        # Longest cells first: with a few trial slots this shortens the sweep's tail.
        sizes = {name: target_sizes(t) for name, t in plan.targets.items()}
        images = _images(plan)
        cost = {c["cell_id"]: estimate([c], images, sizes)["passes"] for c in plan.grid}
        todo = sorted((c for c in plan.grid if c["cell_id"] not in known), key=lambda c: -cost[c["cell_id"]])
        if todo:
            name = f"exp-{len(experiments(directory)):03d}"
            while (directory / name).exists():
                name = f"exp-{int(name[4:]) + 1:03d}"
            print(f"running {len(todo)} new cells of {len(plan.grid)} in {directory / name}")
            table.title = f"{directory.name}/{name}"
            run_config = tune.RunConfig(
                name=name, storage_path=directory.uri,
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1))
            watch = this_run(run_config)
            tuner = tune.Tuner(
                trainable,
                # Each cell is a preset point; the placeholders make every key a known search key.
                param_space={key: None for key in todo[0]},
                tune_config=tune.TuneConfig(
                    # --max-concurrent: the generator holds back new trials (Tune ignores TuneConfig's
                    # max_concurrent_trials for a search_alg of this kind). A restored experiment keeps
                    # the limit it was started with (it is part of the generator's saved state).
                    search_alg=BasicVariantGenerator(points_to_evaluate=todo, max_concurrent=options.max_concurrent or 0),
                    num_samples=len(todo),
                    # A finished trial's process serves the next one: no new interpreter, imports
                    # and FFCV/numba compilation per cell (every trial seeds and sizes itself).
                    reuse_actors=True,
                    trial_dirname_creator=trial_dirname,
                    trial_name_creator=trial_name,
                ),
                run_config=run_config,
            )
            _fit(tuner, watch)
    finally:
        ray.shutdown()
    return directory
