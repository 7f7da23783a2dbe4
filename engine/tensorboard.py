"""TensorBoard curves of a sweep: one run per cell, named by the cell, stepped by epoch.

Tune's own TensorBoard logger names runs by trial directory (`exp-000/cell-<hash>`), steps them
by Tune's iteration (so a pre-trained cell's fine-tuning curve starts a few steps after a scratch
cell's) and mixes both phases under one tag (`images_per_s`). `CellCurves` writes
`<sweep>/tensorboard/<cell name>/` instead: `finetune/<metric>` with step = fine-tuning epoch and
`pretrain/<metric>` with step = pre-training epoch. `tensorboard --logdir <sweep>/tensorboard`
shows them. For a sweep on object storage the runs are written to a local folder and uploaded to
`<sweep>/tensorboard/` whenever a cell ends (and when the experiment ends).
"""
from __future__ import annotations

import math
from pathlib import Path

from ray.tune import Callback
from ray.tune.result import AUTO_RESULT_KEYS

from engine.row_ledger import ALREADY_LOGGED
from engine.spec import describe_cell
from datasets.storage.location import Location

__all__ = ["TENSORBOARD_DIR", "CellCurves", "run_name"]

TENSORBOARD_DIR = "tensorboard"
PHASES = ("pretrain", "finetune")
# Row keys that describe the cell or the row, not a curve.
NOT_CURVES = {"epoch", "subset_images", "subset_classes", *AUTO_RESULT_KEYS}


def run_name(config: dict) -> str:
    """The cell's TensorBoard run name: its readable name (`resnet18-scratch-s0`), safe as a folder name."""
    return describe_cell(config).replace("/", "_")


def curves(phase: str, result: dict) -> dict[str, float]:
    """`{tag: value}` of one reported row: `pretrain/loss`, `finetune/id_f1`, ... (finite numbers only)."""
    out = {}
    for key, value in result.items():
        if key in NOT_CURVES or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if math.isfinite(value):
            out[f"{phase}/{key.removeprefix(phase + '_')}"] = float(value)
    return out


class CellCurves(Callback):
    """Tune callback (driver side) writing each cell's reported rows as TensorBoard scalars."""

    upload_to: Location | None = None   # experiments pickled before uploads existed have none

    def __init__(self, logdir: str | Path, upload_to: Location | None = None):
        self.logdir, self.upload_to = str(logdir), upload_to
        self._writers: dict[str, object] = {}

    def __getstate__(self) -> dict:
        # Tune pickles its run configuration (this callback included) into the experiment: no writers.
        return {"logdir": self.logdir, "upload_to": self.upload_to, "_writers": {}}

    def _upload(self) -> None:
        if self.upload_to is not None and Path(self.logdir).is_dir():
            self.upload_to.upload(Path(self.logdir))

    def _run_dir(self, config: dict) -> Path:
        """`<logdir>/<cell name>`; the cell id is recorded inside, so two cells never share a run."""
        name, cell = run_name(config), str(config.get("cell_id", ""))
        path = Path(self.logdir) / name
        marker = path / "cell_id"
        if marker.exists() and marker.read_text().strip() != cell:
            path = Path(self.logdir) / f"{name}-{cell[:8]}"
            marker = path / "cell_id"
        path.mkdir(parents=True, exist_ok=True)
        marker.write_text(cell + "\n")
        return path

    def _writer(self, trial):
        from torch.utils.tensorboard import SummaryWriter

        key = trial.trial_id
        if key not in self._writers:
            self._writers[key] = SummaryWriter(log_dir=str(self._run_dir(trial.config)), flush_secs=10)
        return self._writers[key]

    def on_trial_result(self, iteration: int, trials: list, trial, result: dict, **info) -> None:
        phase, epoch = result.get("phase"), result.get("epoch")
        if phase not in PHASES or not isinstance(epoch, int) or result.get(ALREADY_LOGGED):
            return
        writer = self._writer(trial)
        for tag, value in curves(phase, result).items():
            writer.add_scalar(tag, value, global_step=epoch)
        writer.flush()  # a watcher sees every epoch as it is reported

    def _close(self, trial) -> None:
        writer = self._writers.pop(trial.trial_id, None)
        if writer is not None:
            writer.close()
            self._upload()

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        self._close(trial)

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        self._close(trial)

    def on_experiment_end(self, trials: list, **info) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()
        self._upload()
