"""Read Ray Tune experiment directories from disk into pandas tables (no live cluster, no ray).

What Ray 2.60 writes, and what this module relies on:
- An experiment dir holds ``experiment_state-<session timestamp>.json``; each driver session
  (first run, every ``Tuner.restore``) writes its own, and Tune reads the newest by name.
  Its ``trial_data`` is a list of ``[trial_json, run_metadata_json]`` string pairs; the trial
  JSON has ``trial_id``, ``status`` (PENDING | RUNNING | PAUSED | TERMINATED | ERROR),
  ``relative_logdir`` (the trial dir, relative to the experiment dir) and ``config``; the run
  metadata has ``error_filename`` and ``num_failures``. Plain ``json`` reads it: the
  ``CLOUDPICKLE_FALLBACK`` blobs inside are left as strings, never unpickled.
- Each trial dir holds ``params.json`` (the flat config), ``result.json`` (one JSON object per
  ``tune.report`` call) and, after a crash, ``error.txt``/``error.pkl``, which stay after a
  successful resume. A resume from a checkpoint appends to ``result.json``, so epochs after the
  checkpoint appear twice; a restart without a checkpoint starts the file over. A PENDING
  trial's dir exists but is empty.
Scores stay fractions, as the trials report them.
"""

from __future__ import annotations

import fnmatch
import json
import math
import os
import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

STATE_GLOB = "experiment_state*.json"
OLD_DIR_GLOB = "*.old-*"
STATUS = {
    "TERMINATED": "finished",
    "ERROR": "errored",
    "RUNNING": "running",
    "PENDING": "pending",
    "PAUSED": "pending",  # waiting to be resumed by a scheduler: not running now, not done
}
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
_TRIAL_ID_IN_DIRNAME = re.compile(r"_([0-9a-f]{5}_\d{5})(?:_|$)")
PathLike = str | os.PathLike


@dataclass
class _Trial:
    trial_id: str
    status: str
    experiment: Path
    trial_dir: Path
    config: dict
    rows: list[dict] = field(default_factory=list)
    error: str | None = None


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


def load_trials(paths: PathLike | Iterable[PathLike]) -> pd.DataFrame:
    """One row per trial: config keys, trial_id, status, experiment, trial_dir, error, epochs_done.

    ``status`` is "finished" | "errored" | "running" | "pending"; ``error`` is the last line
    of the trial's ``error.txt`` when it has one (a finished trial keeps the file of a failure
    it was resumed from); ``epochs_done`` counts its distinct fine-tuning epochs. Trials that
    never reported still appear here.
    """
    return _trials_table(_collect(paths))


def load_experiments(paths: PathLike | Iterable[PathLike]) -> pd.DataFrame:
    """One row per (trial, fine-tuning epoch) of every experiment at or beneath ``paths``.

    Columns: the trial's config keys as plain columns (``value`` is an object column holding
    int/float/str/None as written), ``trial_id``, ``status``, ``experiment``, ``trial_dir``,
    then the metrics ``epoch, id_f1, ood_f1, id_acc, ood_acc, train_loss, images_per_s``
    (NaN when a trial did not report one), ``id_val_f1``/``ood_val_f1`` when any trial
    reported them, and any other metric the trials reported. Only ``phase == "finetune"``
    rows are kept; when a trial reported an epoch twice (re-run after a resume) the last row
    wins. Scores are fractions. A config key that clashes with one of these column names is
    renamed ``config/<key>``.
    """
    return _rows_table(_collect(paths))


def load_tables(paths: PathLike | Iterable[PathLike]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(load_trials(paths), load_experiments(paths))`` from a single pass over the disk."""
    trials = _collect(paths)
    return _trials_table(trials), _rows_table(trials)


def _trials_table(trials: list[_Trial]) -> pd.DataFrame:
    records = []
    for t in trials:
        rec = _config_columns(t.config)
        rec.update(_meta(t))
        rec["error"] = t.error
        rec["epochs_done"] = len(t.rows)
        records.append(rec)
    return _frame(records, trials, [*META, "error", "epochs_done"])


def _rows_table(trials: list[_Trial]) -> pd.DataFrame:
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


# --- reading one experiment ------------------------------------------------------------------


def _collect(paths: PathLike | Iterable[PathLike]) -> list[_Trial]:
    trials = []
    for exp in find_experiments(paths):
        trials.extend(_read_experiment(exp))
    return trials


def _read_experiment(exp: Path) -> list[_Trial]:
    state = _read_state(exp)
    trials = []
    seen: set[Path] = set()
    for entry in state:
        trial_dir = exp / entry["relative_logdir"]
        seen.add(trial_dir)
        trials.append(_read_trial(exp, trial_dir, entry))
    # Trials the newest state snapshot does not know yet (the driver died before writing it).
    for trial_dir in sorted(p for p in exp.iterdir() if p.is_dir() and p not in seen):
        if (trial_dir / "params.json").is_file() or (trial_dir / "result.json").is_file():
            trials.append(_read_trial(exp, trial_dir, None))
    return sorted(trials, key=lambda t: t.trial_id)


def _read_state(exp: Path) -> list[dict]:
    """Trial entries of the newest experiment_state file (Tune's own choice: max by name)."""
    newest = max(exp.glob(STATE_GLOB))
    try:
        data = json.loads(newest.read_text())
        state_mtime = newest.stat().st_mtime
        entries = []
        # Each entry is [trial JSON, run-metadata JSON]; the metadata is not needed here.
        for trial_json, _run_metadata in data["trial_data"]:
            trial = json.loads(trial_json)
            entries.append(
                {
                    "trial_id": trial["trial_id"],
                    "status": trial["status"],
                    "relative_logdir": trial["relative_logdir"],
                    "config": trial.get("config") or {},
                    "state_mtime": state_mtime,
                }
            )
        return entries
    except (OSError, ValueError, KeyError, TypeError) as exc:
        warnings.warn(
            f"{newest}: unreadable experiment state ({exc}); statuses come from trial dirs",
            stacklevel=2,
        )
        return []


def _read_trial(exp: Path, trial_dir: Path, entry: dict | None) -> _Trial:
    config = _read_json(trial_dir / "params.json")
    if config is None:
        config = dict(entry["config"]) if entry else {}
    rows = _read_finetune_rows(trial_dir / "result.json")
    error = _read_error(trial_dir)
    if entry is not None:
        trial_id = entry["trial_id"]
        status = STATUS.get(entry["status"], "pending")
        if status == "pending" and rows:
            status = "running"  # the state snapshot predates the trial's first report
        if status in ("running", "pending") and _crashed_since(trial_dir, entry["state_mtime"]):
            status = "errored"
    else:
        trial_id = _trial_id_from_dir(trial_dir)
        status = _status_without_state(trial_dir, config, rows)
    return _Trial(trial_id, status, exp, trial_dir, config, rows, error)


def _crashed_since(trial_dir: Path, state_mtime: float) -> bool:
    """An error file newer than the state snapshot and than the last result: a crash the
    snapshot missed (e.g. the driver was killed right after). A retried trial that reported
    again after its error is not counted."""
    error = _mtime(trial_dir / "error.txt")
    return error > state_mtime and error >= _mtime(trial_dir / "result.json")


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return -math.inf


def _status_without_state(trial_dir: Path, config: dict, rows: list[dict]) -> str:
    if (trial_dir / "error.txt").is_file() or (trial_dir / "error.pkl").is_file():
        return "errored"
    planned = config.get("finetune_epochs")
    epochs = [r.get("epoch") for r in rows if isinstance(r.get("epoch"), (int, float))]
    if isinstance(planned, int) and epochs and max(epochs) >= planned:
        return "finished"
    return "running" if rows else "pending"


def _read_finetune_rows(path: Path) -> list[dict]:
    """Fine-tuning rows of a result.json, the last one per epoch, sorted by epoch."""
    if not path.is_file():
        return []
    by_epoch: dict = {}
    bad = 0
    with path.open() as fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError:
                bad += 1  # a line cut short by a killed process
                continue
            if isinstance(row, dict) and row.get("phase") == "finetune":
                by_epoch.pop(row.get("epoch"), None)
                by_epoch[row.get("epoch")] = row
    if bad:
        warnings.warn(f"{path}: skipped {bad} unreadable line(s)", stacklevel=2)
    return sorted(by_epoch.values(), key=lambda r: _epoch_key(r.get("epoch")))


def _epoch_key(epoch: object) -> float:
    return float(epoch) if isinstance(epoch, (int, float)) else float("inf")


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _read_error(trial_dir: Path) -> str | None:
    try:
        lines = [ln.strip() for ln in (trial_dir / "error.txt").read_text().splitlines()]
    except OSError:
        return None
    lines = [ln for ln in lines if ln]
    return lines[-1] if lines else "error"


def _trial_id_from_dir(trial_dir: Path) -> str:
    match = _TRIAL_ID_IN_DIRNAME.search(trial_dir.name)
    return match.group(1) if match else trial_dir.name


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


def _meta(t: _Trial) -> dict:
    return {
        "trial_id": t.trial_id,
        "status": t.status,
        "experiment": str(t.experiment),
        "trial_dir": str(t.trial_dir),
    }


def _frame(
    records: list[dict], trials: list[_Trial], tail: list[str], extra_reserved: Iterable[str] = ()
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
