"""What Ray Tune writes into an experiment dir, read back from disk (no ray import).

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
"""

from __future__ import annotations

import json
import math
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

STATE_GLOB = "experiment_state*.json"
STATUS = {
    "TERMINATED": "finished",
    "ERROR": "errored",
    "RUNNING": "running",
    "PENDING": "pending",
    "PAUSED": "pending",  # waiting to be resumed by a scheduler: not running now, not done
}
_TRIAL_ID_IN_DIRNAME = re.compile(r"_([0-9a-f]{5}_\d{5})(?:_|$)")


@dataclass
class TrialRecord:
    """One trial as read from disk: its status, config and fine-tuning rows."""

    trial_id: str
    status: str
    experiment: Path | str  # a str once relabelled with the remote URI it was read from
    trial_dir: Path | str
    config: dict
    rows: list[dict] = field(default_factory=list)
    error: str | None = None


def plan_experiment(exp: Path) -> list[tuple[Path, dict | None]]:
    """(trial dir, state entry or None) of every trial of an experiment dir."""
    state = _read_state(exp)
    planned: list[tuple[Path, dict | None]] = []
    seen: set[Path] = set()
    for entry in state:
        trial_dir = exp / entry["relative_logdir"]
        seen.add(trial_dir)
        planned.append((trial_dir, entry))
    # Trials the newest state snapshot does not know yet (the driver died before writing it).
    for trial_dir in sorted(p for p in exp.iterdir() if p.is_dir() and p not in seen):
        if (trial_dir / "params.json").is_file() or (trial_dir / "result.json").is_file():
            planned.append((trial_dir, None))
    return planned


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


def read_trial(exp: Path, trial_dir: Path, entry: dict | None) -> TrialRecord:
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
    return TrialRecord(trial_id, status, exp, trial_dir, config, rows, error)


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
