"""A resumed trial's replayed rows land once: Tune's real JSON and CSV loggers and `CellCurves`,
called the way Tune calls its callbacks (in order, on one result dict), on a stand-in trial whose
driver-side and storage-side files the test writes by hand. TensorBoard runs are read back with
TensorBoard's own `EventAccumulator`."""
from __future__ import annotations

import csv
import json
from pathlib import Path
from types import SimpleNamespace

import pyarrow.fs
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from engine.row_ledger import REPLAYED, ProgressCsv, ResultJson, RowLedger
from engine.tensorboard import CellCurves

CONFIG = {"cell_id": "c0ffee", "intervention": "scratch", "arch": "resnet18", "seed": 0}


class StandInTrial:
    """What Tune's loggers read of a Trial: id, config, its driver-side dir and storage-side dir."""

    def __init__(self, local: Path, remote: Path, checkpoint: bool):
        self.trial_id, self.config, self.local_path = "t0", CONFIG, str(local)
        self.checkpoint = object() if checkpoint else None
        self.storage = SimpleNamespace(storage_filesystem=pyarrow.fs.LocalFileSystem(), trial_fs_path=str(remote))
        self.init_local_path()  # Tune creates it before the loggers see the trial

    def init_local_path(self) -> None:
        Path(self.local_path).mkdir(parents=True, exist_ok=True)


def row(epoch: int, phase: str = "finetune", **extra) -> dict:
    return {"phase": phase, "epoch": epoch, "id_f1": epoch / 10, **extra}


def write_rows(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def logged(path: Path) -> list[tuple]:
    return [(r["phase"], r["epoch"]) for r in map(json.loads, path.read_text().splitlines())]


def dispatch(callbacks: list, trial, results: list[dict]) -> None:
    """As Tune's CallbackList: each callback in order, on the same result dict."""
    for callback in callbacks:
        callback.on_trial_start(iteration=0, trials=[trial], trial=trial)
    for result in results:
        for callback in callbacks:
            callback.on_trial_result(iteration=0, trials=[trial], trial=trial, result=result)
    for callback in callbacks:
        callback.on_trial_complete(iteration=0, trials=[trial], trial=trial)


def test_replayed_rows_are_logged_only_where_the_drivers_result_json_lacks_them(tmp_path):
    local, remote = tmp_path / "driver" / "cell", tmp_path / "storage" / "cell"
    # The driver's copy holds pre-training epoch 1 and fine-tuning epoch 1: a driver killed before
    # uploading fine-tuning epoch 2's row, restored.
    write_rows(local / "result.json", [row(1, "pretrain"), row(1)])
    trial = StandInTrial(local, remote, checkpoint=False)
    callbacks = [RowLedger(), ResultJson(), ProgressCsv(), CellCurves(tmp_path / "tb")]
    dispatch(callbacks, trial, [
        row(1, **{REPLAYED: True}),   # held: skipped everywhere
        row(2, **{REPLAYED: True}),   # lacking: logged
        row(3),                       # trained now
        row(3, **{REPLAYED: True}),   # the same trial retried in this driver run: held
    ])
    # by hand: pre-training 1 and fine-tuning 1 were there; 2 and 3 are added once each
    assert logged(local / "result.json") == [("pretrain", 1), ("finetune", 1), ("finetune", 2), ("finetune", 3)]
    assert all(REPLAYED not in r for r in map(json.loads, (local / "result.json").read_text().splitlines()))
    with open(local / "progress.csv") as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == [2, 3]
    runs = list((tmp_path / "tb").iterdir())
    assert [r.name for r in runs] == ["resnet18-scratch-s0"]
    events = EventAccumulator(str(runs[0]))
    events.Reload()
    assert [e.step for e in events.Scalars("finetune/id_f1")] == [2, 3]


def test_a_replayed_row_is_logged_when_the_driver_has_no_copy(tmp_path):
    # A trial Tune knows no checkpoint of starts a new result.json (Tune's rule); the trial, resuming from
    # a newer checkpoint of its own directory, replays its rows and each is logged once.
    local, remote = tmp_path / "driver" / "cell", tmp_path / "storage" / "cell"
    write_rows(remote / "result.json", [row(1)])
    trial = StandInTrial(local, remote, checkpoint=False)
    dispatch([RowLedger(), ResultJson()], trial, [row(1, **{REPLAYED: True}), row(2, **{REPLAYED: True}), row(3)])
    assert logged(local / "result.json") == [("finetune", 1), ("finetune", 2), ("finetune", 3)]


def test_storage_copy_is_restored_only_where_the_driver_has_none(tmp_path):
    local, remote = tmp_path / "driver" / "cell", tmp_path / "storage" / "cell"
    write_rows(remote / "result.json", [row(1)])            # storage lags by an upload
    write_rows(local / "result.json", [row(1), row(2)])     # this driver logged epoch 2 before the retry
    trial = StandInTrial(local, remote, checkpoint=True)
    ResultJson().on_trial_start(iteration=0, trials=[trial], trial=trial)
    assert logged(local / "result.json") == [("finetune", 1), ("finetune", 2)]  # not replaced by storage's

    fresh = tmp_path / "restored" / "cell"  # a restored experiment: the new driver has no copy yet
    trial = StandInTrial(fresh, remote, checkpoint=True)
    callbacks = [RowLedger(), ResultJson()]
    dispatch(callbacks, trial, [row(1, **{REPLAYED: True}), row(2, **{REPLAYED: True})])
    assert logged(fresh / "result.json") == [("finetune", 1), ("finetune", 2)]
