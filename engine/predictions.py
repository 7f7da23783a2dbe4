"""Per-example predictions of a cell, one compact file in its trial directory: `predictions.npz`.

Written after every fine-tuning epoch (the whole file again, under a temporary name, then moved),
through the trial's storage filesystem, so it lands beside `result.json` on local and remote
storage alike. It holds, for every evaluated split (`id_test`, `test`, the validation splits):
`<split>.y_true` (n,) and `<split>.y_pred` (epochs, n), the predicted class of each example after
each fine-tuning epoch, in the split's `.beton` order, plus `epochs` (1-based). Labels are int16
when the classes fit (int32 otherwise): 1,000 ImageNet-V2 examples x 12 epochs are 24 KB. A
resumed cell reads the file back and keeps the epochs up to the checkpoint it resumed from.
`analysis.predictions` reads it.
"""
from __future__ import annotations

import io

import numpy as np

FILENAME = "predictions.npz"


def _dtype(num_classes: int) -> type:
    return np.int16 if num_classes <= np.iinfo(np.int16).max else np.int32


class PredictionLog:
    """The predictions of one cell's fine-tuning epochs, kept in memory and written after each epoch."""

    def __init__(self, num_classes: int):
        self.dtype = _dtype(num_classes)
        self.y_true: dict[str, np.ndarray] = {}
        self.y_pred: dict[str, list[np.ndarray]] = {}
        self.epochs: list[int] = []

    def add(self, epoch: int, predictions: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
        """Record `epoch`'s {split: (y_true, y_pred)}."""
        for split, (y_true, y_pred) in predictions.items():
            self.y_true[split] = np.asarray(y_true, dtype=self.dtype)
            self.y_pred.setdefault(split, []).append(np.asarray(y_pred, dtype=self.dtype))
        self.epochs.append(epoch)

    def to_bytes(self) -> bytes:
        arrays = {"epochs": np.asarray(self.epochs, dtype=np.int32)}
        for split in self.y_true:
            arrays[f"{split}.y_true"] = self.y_true[split]
            arrays[f"{split}.y_pred"] = np.stack(self.y_pred[split])
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, num_classes: int, up_to_epoch: int) -> PredictionLog:
        """A log read back from `to_bytes`' output, keeping the epochs <= `up_to_epoch`."""
        log = cls(num_classes)
        with np.load(io.BytesIO(data)) as stored:
            keep = stored["epochs"] <= up_to_epoch
            log.epochs = stored["epochs"][keep].tolist()
            for key in stored.files:
                if key.endswith(".y_true"):
                    split = key[: -len(".y_true")]
                    log.y_true[split] = stored[key]
                    log.y_pred[split] = list(stored[f"{split}.y_pred"][keep])
        return log


def write_log(log: PredictionLog, filesystem, trial_path: str) -> None:
    """Write `log` as `<trial_path>/predictions.npz` on a pyarrow filesystem: a temporary name, then a move."""
    filesystem.create_dir(trial_path, recursive=True)  # before the first report, Tune may not have made it
    tmp = f"{trial_path}/.{FILENAME}.tmp"
    with filesystem.open_output_stream(tmp) as out:
        out.write(log.to_bytes())
    filesystem.move(tmp, f"{trial_path}/{FILENAME}")


def read_log(filesystem, trial_path: str, num_classes: int, up_to_epoch: int) -> PredictionLog:
    """The log of `<trial_path>/predictions.npz` up to `up_to_epoch`; an empty log when there is no file yet."""
    import pyarrow.fs

    path = f"{trial_path}/{FILENAME}"
    if filesystem.get_file_info(path).type == pyarrow.fs.FileType.NotFound:
        return PredictionLog(num_classes)
    with filesystem.open_input_stream(path) as f:
        return PredictionLog.from_bytes(f.read(), num_classes, up_to_epoch)
