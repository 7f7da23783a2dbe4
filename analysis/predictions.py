"""Per-example predictions of a trial (`predictions.npz` in its trial directory, written by the
engine after every fine-tuning epoch), read from a local path or a storage URI (`s3://`, `file://`).

`read_predictions(trial_dir)` -> {split: (y_true (n,), y_pred (epochs, n))} and the epochs
(1-based); `subset_scores` scores some rows of a split at every epoch (an in-support or
out-of-support part of a natural shift, `analysis.support_split`).
"""
from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import remote
from analysis.metrics import accuracy, macro_f1

FILENAME = "predictions.npz"


def read_predictions(trial_dir: str | os.PathLike) -> tuple[np.ndarray, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """(epochs, {split: (y_true, y_pred per epoch)}) of one trial; FileNotFoundError naming the file."""
    if remote.is_uri(trial_dir):
        from pyarrow import fs as pafs

        filesystem, root = pafs.FileSystem.from_uri(str(trial_dir))
        path = f"{root.rstrip('/')}/{FILENAME}"
        if filesystem.get_file_info(path).type == pafs.FileType.NotFound:
            raise FileNotFoundError(f"{remote.join(str(trial_dir), FILENAME)} does not exist: the trial has not "
                                    "finished an epoch, or ran before predictions were stored")
        with filesystem.open_input_stream(path) as f:
            data = f.read()
    else:
        path = Path(trial_dir) / FILENAME
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist: the trial has not finished an epoch, or ran before "
                                    "predictions were stored")
        data = path.read_bytes()
    with np.load(io.BytesIO(data)) as stored:
        splits = {key[: -len(".y_true")]: (stored[key].astype(np.int64),
                                           stored[key.replace(".y_true", ".y_pred")].astype(np.int64))
                  for key in stored.files if key.endswith(".y_true")}
        return stored["epochs"].astype(int), splits


def subset_scores(trial_dir: str | os.PathLike, split: str, rows: np.ndarray, name: str) -> pd.DataFrame:
    """One row per epoch: `epoch`, `<name>_acc`, `<name>_f1` (fractions) of `rows` of `split`."""
    epochs, splits = read_predictions(trial_dir)
    if split not in splits:
        raise KeyError(f"{trial_dir}: no predictions of split '{split}'; it has {', '.join(splits)}")
    y_true, y_pred = splits[split]
    rows = np.asarray(rows)
    return pd.DataFrame({"epoch": epochs,
                         f"{name}_acc": [accuracy(y_true[rows], p[rows]) for p in y_pred],
                         f"{name}_f1": [macro_f1(y_true[rows], p[rows]) for p in y_pred]})
