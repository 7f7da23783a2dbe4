"""Read Ray Tune experiment directories from disk into pandas tables (no live cluster, no ray).

The Tune files themselves (experiment state, params, results, error files) are read by
``analysis.tune_files``, which documents what Ray 2.60 writes. Remote dirs (``s3://``,
``gs://``, ``file://`` URIs) are read through pyarrow filesystems, as Tune does: only their small
files are copied to a temporary local dir (``analysis.remote``).
Scores stay fractions, as the trials report them.
"""

from __future__ import annotations

import fnmatch
import os
import sys
import tempfile
from collections.abc import Iterable
from contextlib import ExitStack
from pathlib import Path

import pandas as pd

from analysis.remote import download_small_files, is_uri
from analysis.tune_files import (
    STATE_GLOB,
    STATUS,
    TrialRecord,
    plan_experiment,
    read_trial,
)

OLD_DIR_GLOB = "*.old-*"
METRICS = ("epoch", "id_f1", "ood_f1", "id_acc", "ood_acc", "train_loss", "images_per_s")
OPTIONAL_METRICS = ("id_val_f1", "ood_val_f1")
META = ("trial_id", "status", "experiment", "trial_dir")
_RESERVED = frozenset({*META, *METRICS, *OPTIONAL_METRICS, "error", "epochs_done"})
# Keys Tune adds to every result row; they are bookkeeping, not metrics.
_TUNE_KEYS = frozenset(
    {
        "phase", "timestamp", "checkpoint_dir_name", "done", "training_iteration", "trial_id",
        "date", "time_this_iter_s", "time_total_s", "pid", "hostname", "node_ip", "config",
        "time_since_restore", "iterations_since_restore", "timesteps_since_restore",
        "experiment_tag", "experiment_id", "should_checkpoint", "episodes_total",
        "timesteps_total",
    }
)
__all__ = [
    "METRICS", "OPTIONAL_METRICS", "STATE_GLOB", "STATUS", "find_experiments", "load_experiments",
    "load_tables", "load_trials",
]
PathLike = str | os.PathLike
# With progress=None, a progress bar appears from this many trials on (and only on a terminal).
PROGRESS_MIN_TRIALS = 200


def find_experiments(paths: PathLike | Iterable[PathLike]) -> list[Path]:
    """Every Tune experiment dir at or beneath ``paths`` (sweep or experiment dirs), sorted.

    Recursion skips ``<sweep>.old-<timestamp>`` dirs left by ``--fresh``; passing one
    explicitly reads it. Raises FileNotFoundError naming a path that is missing or holds no
    experiment.
    """
    found: dict[Path, None] = {}
    for raw in _as_list(paths):
        path = Path(raw).expanduser()
        if not path.is_dir():
            what = "is not a directory" if path.exists() else "does not exist"
            raise FileNotFoundError(
                f"{path} {what}; pass a sweep directory (<storage>/<sweep>) or a Tune experiment "
                "directory"
            )
        exps = [path] if _is_experiment(path) else _search(path)
        if not exps:
            raise FileNotFoundError(
                f"{path} holds no Ray Tune experiment (no {STATE_GLOB.replace('*', '-*')} beneath "
                "it); pass a sweep directory (<storage>/<sweep>) or one of its experiment dirs"
            )
        for exp in exps:
            found.setdefault(exp.resolve(), None)
    return sorted(found)


def load_trials(
    paths: PathLike | Iterable[PathLike], progress: bool | None = None
) -> pd.DataFrame:
    """One row per trial: config keys, trial_id, status, experiment, trial_dir, error, epochs_done.

    ``status`` is "finished" | "errored" | "running" | "pending"; ``error`` is the last line
    of the trial's ``error.txt`` when it has one (a finished trial keeps the file of a failure
    it was resumed from); ``epochs_done`` counts its distinct fine-tuning epochs. Trials that
    never reported still appear here. ``progress``: see ``load_experiments``.
    """
    return _trials_table(_collect(paths, progress))


def load_experiments(
    paths: PathLike | Iterable[PathLike], progress: bool | None = None
) -> pd.DataFrame:
    """One row per (trial, fine-tuning epoch) of every experiment at or beneath ``paths``.

    Columns: the trial's config keys as plain columns (``value`` is an object column holding
    int/float/str/None as written), ``trial_id``, ``status``, ``experiment``, ``trial_dir``,
    then the metrics ``epoch, id_f1, ood_f1, id_acc, ood_acc, train_loss, images_per_s``
    (NaN when a trial did not report one), ``id_val_f1``/``ood_val_f1`` when any trial
    reported them, and any other metric the trials reported. Only ``phase == "finetune"``
    rows are kept; when a trial reported an epoch twice (re-run after a resume) the last row
    wins. Scores are fractions. A config key that clashes with one of these column names is
    renamed ``config/<key>``.

    ``paths`` may mix local dirs and URIs (``s3://bucket/sweeps/demo``; see ``analysis.remote``);
    a remote trial's ``experiment`` and ``trial_dir`` are URIs. ``progress``: a progress bar on
    stderr while reading trials; None shows it for ``PROGRESS_MIN_TRIALS`` or more trials when
    stderr is a terminal, True always, False never.
    """
    return _rows_table(_collect(paths, progress))


def load_tables(
    paths: PathLike | Iterable[PathLike], progress: bool | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(load_trials(paths), load_experiments(paths))`` from a single pass over the disk."""
    trials = _collect(paths, progress)
    return _trials_table(trials), _rows_table(trials)


def _trials_table(trials: list[TrialRecord]) -> pd.DataFrame:
    records = []
    for t in trials:
        rec = _config_columns(t.config)
        rec.update(_meta(t))
        rec["error"] = t.error
        rec["epochs_done"] = len(t.rows)
        records.append(rec)
    return _frame(records, trials, [*META, "error", "epochs_done"])


def _rows_table(trials: list[TrialRecord]) -> pd.DataFrame:
    extra: dict[str, None] = {}
    for t in trials:
        for row in t.rows:
            extra.update((k, None) for k in row if k not in METRICS and k not in _TUNE_KEYS)
    metric_cols = [*METRICS, *(m for m in OPTIONAL_METRICS if m in extra)]
    metric_cols += [k for k in extra if k not in metric_cols]
    records = []
    for t in trials:
        base = _config_columns(t.config, extra_reserved=metric_cols)
        base.update(_meta(t))
        for row in t.rows:
            rec = dict(base)
            rec.update((k, row.get(k)) for k in metric_cols)
            records.append(rec)
    df = _frame(records, trials, [*META, *metric_cols], extra_reserved=metric_cols)
    for col in metric_cols:
        if df[col].dtype != object:
            continue
        # Missing metrics arrive as None; make numeric columns numeric (NaN) again.
        converted = pd.to_numeric(df[col], errors="coerce")
        if converted.notna().sum() == df[col].notna().sum():
            df[col] = converted
    return df


# --- discovery -------------------------------------------------------------------------------


def _as_list(paths: PathLike | Iterable[PathLike]) -> list[PathLike]:
    if isinstance(paths, (str, os.PathLike)):
        return [paths]
    out = list(paths)
    if not out:
        raise FileNotFoundError("no path given; pass a sweep directory or a Tune experiment dir")
    return out


def _is_experiment(path: Path) -> bool:
    return any(path.glob(STATE_GLOB))


def _search(root: Path) -> list[Path]:
    found = []
    for dirpath, dirnames, _ in os.walk(root):
        here = Path(dirpath)
        if here != root and _is_experiment(here):
            found.append(here)
            dirnames.clear()  # trial dirs and checkpoints hold no further experiments
            continue
        dirnames[:] = sorted(d for d in dirnames if not fnmatch.fnmatch(d, OLD_DIR_GLOB))
    return found


# --- reading experiments -------------------------------------------------------------------


def _collect(paths: PathLike | Iterable[PathLike], progress: bool | None = None) -> list[TrialRecord]:
    raw = _as_list(paths)
    with ExitStack() as stack:
        # (experiment dir, (local root, URI) when it was copied from a remote URI)
        exps: list[tuple[Path, tuple[str, str] | None]] = []
        local = [p for p in raw if not is_uri(p)]
        if local:
            exps += [(exp, None) for exp in find_experiments(local)]
        for uri in (p for p in raw if is_uri(p)):
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="analysis-")))
            download_small_files(uri, tmp)
            try:
                found = find_experiments(tmp)
            except FileNotFoundError:
                raise FileNotFoundError(
                    f"{uri} holds no Ray Tune experiment (no experiment_state-*.json beneath it)"
                ) from None
            exps += [(exp, (str(tmp.resolve()), str(uri).rstrip("/"))) for exp in found]
        tasks = [(exp, remote, d, e) for exp, remote in exps for d, e in plan_experiment(exp)]
        trials = [read_trial(exp, d, e) for exp, _, d, e in _progress(tasks, progress)]
        for (_, remote, _, _), t in zip(tasks, trials, strict=True):
            if remote is not None:
                t.experiment = str(t.experiment).replace(remote[0], remote[1], 1)
                t.trial_dir = str(t.trial_dir).replace(remote[0], remote[1], 1)
    # Within an experiment, trials in trial_id order; experiments in the order found.
    order = {}
    for exp, _, _, _ in tasks:
        order.setdefault(exp, len(order))
    keyed = sorted(
        zip(tasks, trials, strict=True), key=lambda tt: (order[tt[0][0]], tt[1].trial_id)
    )
    return [t for _, t in keyed]


def _progress(tasks: list, progress: bool | None) -> Iterable:
    if progress is False or (progress is None and len(tasks) < PROGRESS_MIN_TRIALS):
        return tasks
    from tqdm import tqdm

    # disable=None: shown only when stderr is a terminal, unless progress=True forces it.
    return tqdm(
        tasks, desc="reading trials", unit="trial", file=sys.stderr,
        disable=None if progress is None else False, leave=False,
    )


# --- tables ----------------------------------------------------------------------------------


def _config_columns(config: dict, extra_reserved: Iterable[str] = ()) -> dict:
    flat = _flatten(config)
    reserved = _RESERVED | set(extra_reserved)
    return {(f"config/{k}" if k in reserved else k): v for k, v in flat.items()}


def _flatten(config: dict, prefix: str = "") -> dict:
    out = {}
    for key, val in config.items():
        if isinstance(val, dict):
            out.update(_flatten(val, f"{prefix}{key}/"))
        else:
            out[f"{prefix}{key}"] = val
    return out


def _meta(t: TrialRecord) -> dict:
    return {
        "trial_id": t.trial_id,
        "status": t.status,
        "experiment": str(t.experiment),
        "trial_dir": str(t.trial_dir),
    }


def _frame(
    records: list[dict], trials: list[TrialRecord], tail: list[str], extra_reserved: Iterable[str] = ()
) -> pd.DataFrame:
    """DataFrame with config columns first (first-seen order), then ``tail`` columns."""
    config_cols: dict[str, None] = {}
    for t in trials:
        config_cols.update((k, None) for k in _config_columns(t.config, extra_reserved))
    columns = list(config_cols) + list(tail)
    df = pd.DataFrame.from_records(records, columns=columns)
    if "value" in df.columns:
        # Keep the JSON scalars as written: 5 stays 5 (not 5.0) and null stays None.
        df["value"] = pd.Series([r.get("value") for r in records], index=df.index, dtype=object)
    return df
