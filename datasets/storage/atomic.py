"""The project's one atomic-write helper: a reader sees the old file or the whole new one, never part.

`atomic_write(path, data)` writes `data` (bytes, or a callable that writes to the temporary path it
is given, such as `torch.save`) to `.<name>.tmp-<pid>-<random>` beside `path`, fsyncs it, renames it
over `path` and fsyncs the folder, so a power loss after the rename cannot leave an empty or
partial file under the final name. On any error (ENOSPC included) the temporary file is removed
and the error is raised unchanged: nothing is left behind and nothing falls back.
"""
from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Callable

__all__ = ["atomic_write", "temporary_name"]


def temporary_name(path: Path) -> Path:
    """A temporary name beside `path`, unique to this process and call (hidden, never a final name)."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | Path, data: bytes | str | Callable[[Path], None]) -> Path:
    """Write `data` to `path` atomically and durably; returns `path`.

    `data`: bytes, text (UTF-8), or a callable `write(tmp_path)` that writes the whole file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path)
    try:
        if callable(data):
            data(tmp)
        else:
            with open(tmp, "wb") as f:
                f.write(data.encode() if isinstance(data, str) else data)
        _fsync_file(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # after a successful rename there is nothing under this name
    _fsync_dir(path.parent)
    return path
