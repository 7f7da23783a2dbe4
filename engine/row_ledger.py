"""Each epoch's row lands once in a trial's `result.json`, `progress.csv` and TensorBoard run.

A resumed trial reports its checkpoint's fine-tuning rows again, marked `REPLAYED`: a driver
killed between a report and its next upload leaves rows missing from storage, and only the trial
knows them all. The driver decides which replayed rows are new, from its own copy of the trial's
`result.json` (Tune writes it there, the driver being its only writer, and uploads it to storage):

- `RowLedger` (the first of the run's callbacks) marks a replayed row whose fine-tuning epoch that copy holds
  `ALREADY_LOGGED`, in place (Tune lets callbacks change a result);
- `ResultJson` and `ProgressCsv` (Tune's two file loggers) and `engine.tensorboard.CellCurves`
  skip a marked row.

Deciding on the driver matters: the trial cannot read storage's `result.json` reliably while a
driver runs, since Tune's background upload rewrites that file (truncate, then write) at every
snapshot, and a trial reading it in between saw rows missing and reported them twice.

Tune's file loggers, when a trial starts with a checkpoint, also download the trial's file from
storage over the driver's copy. Within one driver run the driver's copy is the newer (storage
lags by an upload), and the download races that upload; `ResultJson` and `ProgressCsv` download
only when the driver has no copy yet (after a restore), reading the whole file before writing it.
"""
from __future__ import annotations

from pathlib import Path

import pyarrow.fs
from ray.tune import Callback
from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

from engine.sweep_dir import finetune_epochs

REPLAYED = "replayed"              # set by a resumed trial on the fine-tuning rows it reports again
ALREADY_LOGGED = "already_logged"  # set by RowLedger on a replayed row the driver's result.json holds


class RowLedger(Callback):
    """Marks a replayed row the trial's `result.json` on the driver already holds (see module doc).

    Must come before the loggers in the run's callbacks: Tune calls them in order."""

    def __init__(self):
        self._logged: dict[str, set] = {}  # fine-tuning epochs per trial id

    def __getstate__(self) -> dict:
        return {"_logged": {}}  # Tune pickles its run configuration: what is logged is read again

    def on_trial_result(self, iteration: int, trials: list, trial, result: dict, **info) -> None:
        logged = self._logged.get(trial.trial_id)
        if logged is None:  # first result of this trial in this driver run: what its file holds
            logged = self._logged[trial.trial_id] = finetune_epochs(Path(trial.local_path))
        replayed = result.pop(REPLAYED, False)
        if result.get("phase") != "finetune":
            return
        if replayed and result.get("epoch") in logged:
            result[ALREADY_LOGGED] = True
        else:
            logged.add(result.get("epoch"))


class _LogsOncePerRow:
    """Mixin for Tune's file loggers: skip marked rows; restore a file only where the driver has none."""

    def log_trial_result(self, iteration: int, trial, result: dict) -> None:
        if not result.get(ALREADY_LOGGED):
            super().log_trial_result(iteration, trial, result)

    def _restore_from_remote(self, file_name: str, trial) -> None:  # Ray 2.60's hook in LoggerCallback
        local = Path(trial.local_path, file_name)
        if not trial.checkpoint or local.exists():
            return  # no checkpoint: the trial starts over (Tune's rule); a driver's own copy is the newest
        fs, remote = trial.storage.storage_filesystem, f"{trial.storage.trial_fs_path}/{file_name}"
        if fs.get_file_info(remote).type != pyarrow.fs.FileType.File:
            return
        with fs.open_input_stream(remote) as f:
            data = f.read()  # all of it before the local file exists: the upload never sees it half-written
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_bytes(data)


class ResultJson(_LogsOncePerRow, JsonLoggerCallback):
    """Tune's `result.json` logger, without the replayed rows the driver already logged."""


class ProgressCsv(_LogsOncePerRow, CSVLoggerCallback):
    """Tune's `progress.csv` logger, without the replayed rows the driver already logged."""
