"""What a sweep directory holds, read from disk: its Tune experiments, their trials' configs and
statuses, which cells are finished, and cells made under another config schema.

A sweep lives in `<storage>/<sweep>/` as one or more Tune experiments (`exp-000`, `exp-001`, ...),
each with Tune's `experiment_state-*.json` snapshots and a `cell-<id>/` directory per trial. The
storage is a local path or an `s3://` URI (`datasets.storage.location.Location`); both are read the same way.
"""
from __future__ import annotations

import json
from pathlib import Path

from engine.inputs import SCHEMA
from datasets.storage.location import Location

__all__ = ["cell_errors", "cell_status", "configs_in", "experiments", "finetune_epochs", "report_other_schemas", "trial_states"]


def experiments(directory: Path | Location) -> list[Location]:
    return Location.of(directory).entries("exp-[0-9][0-9][0-9]", kind="dir")


def trial_states(experiment: Path | Location) -> list[dict]:
    """Every trial Tune's latest snapshot of `experiment` knows (pending ones included): its JSON state."""
    states = Location.of(experiment).entries("experiment_state-*.json", kind="file")
    if not states:
        return []
    trials = json.loads(states[-1].read_text())["trial_data"]
    return [json.loads(state) for state, _ in trials]


def configs_in(experiment: Path | Location) -> list[dict]:
    """Configs of every trial Tune's latest snapshot of `experiment` knows, pending ones included."""
    return [state["config"] for state in trial_states(experiment)]


def finetune_epochs(trial_dir: Path | Location) -> set:
    """Fine-tuning epochs with a row in the trial's result.json."""
    try:
        lines = (Location.of(trial_dir) / "result.json").read_text().splitlines()
    except OSError:
        return set()
    epochs = set()
    for line in filter(str.strip, lines):
        try:
            row = json.loads(line)
        except json.JSONDecodeError:  # a line cut short by a killed driver
            continue
        if row.get("phase") == "finetune":
            epochs.add(row.get("epoch"))
    return epochs


def cell_status(directory: Path | Location, grid: list[dict]) -> dict[str, str]:
    """Per cell id of `grid`, read from `directory`: "finished" (Tune's snapshot says so and its
    result.json holds every fine-tuning epoch), "errored" (the snapshot says so) or "unfinished"
    (never started, stopped, or rows missing: a run must restore it)."""
    seen = _trials_by_cell(directory)
    out = {}
    for cell in grid:
        trials = seen.get(cell["cell_id"], [])
        epochs = set(range(1, int(cell["finetune_epochs"]) + 1))
        if any(status == "TERMINATED" and epochs <= finetune_epochs(d) for status, d in trials):
            out[cell["cell_id"]] = "finished"
        elif any(status == "ERROR" for status, _ in trials):
            out[cell["cell_id"]] = "errored"
        else:
            out[cell["cell_id"]] = "unfinished"
    return out


def _trials_by_cell(directory: Path | Location) -> dict[str, list[tuple[str, Location]]]:
    seen: dict[str, list[tuple[str, Location]]] = {}
    for experiment in experiments(directory):
        try:
            states = trial_states(experiment)
        except (OSError, ValueError, KeyError):
            continue
        for state in states:
            cell = state["config"].get("cell_id")
            trial_dir = experiment / state.get("relative_logdir", f"cell-{cell}")
            seen.setdefault(cell, []).append((state.get("status"), trial_dir))
    return seen


def last_error(trial_dir: Path | Location) -> str:
    """The exception a trial ended with: the last line of Tune's `error.txt` in its directory."""
    try:
        lines = [line.strip() for line in (Location.of(trial_dir) / "error.txt").read_text().splitlines() if line.strip()]
    except OSError:
        return "(no error.txt)"
    return lines[-1] if lines else "(empty error.txt)"


def cell_errors(directory: Path | Location, grid: list[dict]) -> dict[str, tuple[Location, str]]:
    """Per errored cell id of `grid` (as `cell_status` says): its trial directory and the exception it ended with."""
    status = cell_status(directory, grid)
    seen = _trials_by_cell(directory)
    out = {}
    for cell, state in status.items():
        if state == "errored":
            trial_dir = next(d for s, d in reversed(seen[cell]) if s == "ERROR")
            out[cell] = (trial_dir, last_error(trial_dir))
    return out


def _schema(config: dict) -> int:
    return int(config.get("schema") or 1)  # the first version wrote no schema


def report_other_schemas(directory: Path | Location, storage: Path | Location) -> set[Location]:
    """Print one line per place holding cells or pre-trained models of another config schema; return
    the experiments made under another schema (they are not restored: their cells run again)."""
    stale = set()
    for experiment in experiments(directory):
        other = [c for c in configs_in(experiment) if _schema(c) != SCHEMA]
        if other:
            stale.add(experiment)
            print(f"{experiment}: {len(other)} cells were recorded under config schema "
                  f"{sorted({_schema(c) for c in other})[0]} (this version writes schema {SCHEMA}); they stay on "
                  "disk but are not reused, and their cells run again under the new schema")
    old = 0
    pretrained = Location.of(storage) / "pretrained"
    for model in pretrained.entries(kind="dir"):
        try:
            meta = model / "meta.json"
            old += json.loads(meta.read_text()).get("schema", 1) != SCHEMA
        except (OSError, json.JSONDecodeError):
            continue
    if old:
        print(f"{pretrained}: {old} pre-trained models were made under an older config schema "
              f"(this version writes schema {SCHEMA}); they are not reused")
    return stale
