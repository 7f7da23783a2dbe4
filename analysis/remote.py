"""Remote experiment dirs (``s3://``, ``gs://``, ``file://``, ...) through pyarrow filesystems.

Ray Tune itself reaches remote storage with ``pyarrow.fs.FileSystem.from_uri``; so does this
module. Ingest needs only the small files of an experiment, so ``download_small_files`` copies
those (experiment state, params, results, error files) into a local directory with the same
layout and the same modification times, and never touches checkpoint payloads. The report can
be uploaded back with ``upload_dir``.
"""

from __future__ import annotations

import fnmatch
import os
import posixpath
from pathlib import Path

# The files ingest reads (basenames); everything else, checkpoints above all, stays remote.
SMALL_FILES = (
    "experiment_state*.json", "params.json", "result.json", "progress.csv", "error.txt",
    "error.pkl",
)
_SKIP_DIRS = ("checkpoint_*", "*.old-*")


def is_uri(path: object) -> bool:
    """True for ``scheme://...`` strings (``s3://``, ``gs://``, ``file://``, ...)."""
    return isinstance(path, str) and "://" in path and not path.startswith("/")


def download_small_files(uri: str, dest: str | os.PathLike) -> Path:
    """Copy the files ingest needs from ``uri`` (a sweep or experiment dir) into ``dest``.

    Keeps the directory layout below ``uri`` and each file's modification time (ingest compares
    them to tell crashes from retries). Skips ``checkpoint_*`` dirs and, below ``uri``,
    ``<sweep>.old-<time>`` dirs. Raises FileNotFoundError naming ``uri`` when it is missing or
    holds none of these files, and OSError (one line) when the filesystem cannot be reached.

    Returns:
        ``dest`` as a Path.
    """
    from pyarrow import fs as pafs

    try:
        filesystem, root = pafs.FileSystem.from_uri(uri)
        info = filesystem.get_file_info(root)
    except Exception as exc:  # noqa: BLE001 -- pyarrow: ArrowInvalid, OSError, ... (long text)
        raise OSError(f"{uri}: cannot open ({first_line(exc)})") from None
    if info.type != pafs.FileType.Directory:
        what = "does not exist" if info.type == pafs.FileType.NotFound else "is not a directory"
        raise FileNotFoundError(
            f"{uri} {what}; pass a sweep directory or a Tune experiment directory"
        )
    dest = Path(dest)
    copied = 0
    try:
        listing = filesystem.get_file_info(pafs.FileSelector(root, recursive=True))
    except Exception as exc:  # noqa: BLE001 -- as above
        raise OSError(f"{uri}: cannot list ({first_line(exc)})") from None
    root = root.rstrip("/")
    for entry in listing:
        if entry.type != pafs.FileType.File:
            continue
        rel = posixpath.relpath(entry.path, root)
        parts = rel.split("/")
        if any(fnmatch.fnmatch(p, pat) for p in parts[:-1] for pat in _SKIP_DIRS):
            continue
        if not any(fnmatch.fnmatch(parts[-1], pat) for pat in SMALL_FILES):
            continue
        target = dest.joinpath(*parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        with filesystem.open_input_stream(entry.path) as src, target.open("wb") as out:
            out.write(src.read())
        if entry.mtime is not None:
            stamp = entry.mtime.timestamp()
            os.utime(target, (stamp, stamp))
        copied += 1
    if not copied:
        raise FileNotFoundError(
            f"{uri} holds no Ray Tune experiment (no experiment_state-*.json beneath it); pass a "
            "sweep directory or one of its experiment dirs"
        )
    return dest


def upload_dir(local: str | os.PathLike, uri: str) -> None:
    """Copy every file of the local dir ``local`` to ``uri`` (created as needed)."""
    from pyarrow import fs as pafs

    filesystem, root = pafs.FileSystem.from_uri(uri)
    filesystem.create_dir(root, recursive=True)
    for path in sorted(Path(local).rglob("*")):
        if path.is_file():
            rel = path.relative_to(local).as_posix()
            filesystem.create_dir(posixpath.dirname(f"{root}/{rel}"), recursive=True)
            with filesystem.open_output_stream(f"{root}/{rel}") as out:
                out.write(path.read_bytes())


def join(uri: str, *parts: str) -> str:
    """``uri`` with ``parts`` appended, keeping the ``scheme://`` intact."""
    return "/".join([uri.rstrip("/"), *parts])


def first_line(exc: BaseException) -> str:
    """The first line of an exception's text (pyarrow and yaml errors run to many lines)."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
