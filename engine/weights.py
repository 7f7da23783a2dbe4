"""Pre-trained weights given by the user (`--weights`): parsed, hashed, and loaded safely.

`--weights [SOURCE:]ARCH=PATH` (repeatable, or comma-separated) starts the cells of (SOURCE,
ARCH) that would pre-train from a local checkpoint instead: a torchvision state dict for the
`full` baseline (e.g. `imagenet:resnet50=resnet50-11ad3fa6.pth`), or an open_clip checkpoint for a
`clip` cell. The file's SHA-256 enters the cell id and the pre-trained cache key; its path does
not, so moving the file never restarts a cell. Files are read with `torch.load(weights_only=True)`
(never arbitrary pickles). Nothing is downloaded.
"""
from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from pathlib import Path

from engine.spec import Weights


class WeightsError(ValueError):
    """A `--weights` entry that cannot be used; one line naming the file and the fix."""


@lru_cache(maxsize=64)
def _sha256(path: str, size: int, mtime: float) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def file_sha256(path: str | os.PathLike) -> str:
    """16 hex digits of the file's SHA-256 (cached per path, size and mtime within a process)."""
    stat = Path(path).stat()
    return _sha256(str(Path(path).resolve()), stat.st_size, stat.st_mtime)


def parse_weights(text: str, default_source: str, archs: tuple[str, ...]) -> tuple[Weights, ...]:
    """`[SOURCE:]ARCH=PATH[,...]` -> Weights; a bare PATH is for the only architecture of `archs`."""
    out = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        what, sep, path = item.rpartition("=")
        if not sep:
            if len(archs) != 1:
                raise WeightsError(f"--weights {item}: say which architecture it is for, e.g. "
                                   f"--weights {archs[0] if archs else 'resnet50'}={item} (the sweep has "
                                   f"{len(archs)} architectures)")
            what, path = archs[0], item
        source, _, arch = what.rpartition(":")
        source = source or default_source
        file = Path(path).expanduser()
        if not file.is_file():
            raise WeightsError(f"--weights {item}: {file} is not a file; give the path of a local checkpoint "
                               "(nothing is downloaded)")
        if arch not in archs:
            raise WeightsError(f"--weights {item}: architecture '{arch}' is not in the sweep's --archs "
                               f"({', '.join(archs)}); add it or fix the name")
        out.append(Weights(source=source, arch=arch, path=str(file.resolve()), sha256=file_sha256(file)))
    pairs = [(w.source, w.arch) for w in out]
    if len(set(pairs)) != len(pairs):
        raise WeightsError(f"--weights {text}: two files for the same source and architecture")
    return tuple(out)


def load_state_dict(path: str | os.PathLike) -> dict:
    """A checkpoint's state dict, read with `weights_only=True`; unwraps `state_dict`/`model` keys and
    DataParallel's `module.` prefixes, as torchvision and open_clip checkpoints come."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - pickle/zip errors of torch.load have no common base
        raise WeightsError(f"{path}: not a weights-only PyTorch checkpoint ({type(error).__name__}: "
                           f"{str(error).splitlines()[0] if str(error) else ''}); save it with "
                           "torch.save(model.state_dict(), path)") from None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not state:
        raise WeightsError(f"{path}: holds no state dict; save it with torch.save(model.state_dict(), path)")
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_into(model, state: dict, path: str, arch: str) -> None:
    """Load `state` into `model` strictly; a mismatch names the file, the architecture and the first bad key."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    if missing or unexpected or shapes:
        what = (f"missing key {missing[0]}" if missing else f"unexpected key {unexpected[0]}" if unexpected
                else f"key {shapes[0]} has shape {tuple(state[shapes[0]].shape)}, the model {tuple(own[shapes[0]].shape)}")
        raise WeightsError(f"{path}: not a checkpoint of {arch} ({what}); pass the weights of that architecture")
    model.load_state_dict(state)
