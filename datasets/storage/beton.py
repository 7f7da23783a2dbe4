"""The `.beton` cache: one FFCV file per (source, split, resolution, content hash).

Files are written under a temporary name and renamed when complete, under a file lock, so
concurrent trials and interrupted runs never see a half-written file. A file the node lacks is
copied from the shared store when there is one (`shared_cache`), else written here. Free disk space is checked
against an estimate before writing.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from filelock import FileLock

from datasets.storage.atomic import atomic_write
from datasets.storage.shared_cache import fetch


def cache_root() -> Path:
    """Where generated data and `.beton` files live (env SWEEPS_CACHE, default ~/.cache/robustness_sweeps)."""
    return Path(os.environ.get("SWEEPS_CACHE", Path.home() / ".cache" / "robustness_sweeps")).expanduser()


def beton_path(source: str, split: str, resolution: int, content_hash: str, storage: str = "") -> Path:
    """`<cache>/betons/<source>-<split>-<resolution>px-[<storage>-]<hash>.beton`; `storage` names how
    images are stored when a source can store them more than one way (`jpeg50`: half of them JPEG)."""
    tag = f"{storage}-" if storage else ""
    return cache_root() / "betons" / f"{source}-{split}-{resolution}px-{tag}{content_hash[:16]}.beton"


def check_free_space(directory: Path, needed_bytes: int, hint: str = "") -> None:
    """Raise a one-line error when `directory`'s disk has less than `needed_bytes` free (+10%)."""
    directory.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(directory).free
    if free < needed_bytes * 1.1:
        raise OSError(
            f"not enough disk space in {directory}: need ~{needed_bytes / 2**20:.0f} MiB for the .beton cache, "
            f"{free / 2**20:.0f} MiB free; free space or set SWEEPS_CACHE to a larger disk{hint}"
        )


def ensure_beton(
    path: Path,
    make_dataset: Callable[[], Sequence],
    estimated_bytes: int,
    max_resolution: int,
    num_workers: int = 1,
    write_mode: str = "raw",
    jpeg_quality: int = 90,
    check: Callable[[Path], None] | None = None,
    jpeg_fraction: float | None = None,
    space_hint: str = "",
) -> Path:
    """Return `path`, writing it first from `make_dataset()` if it does not exist yet.

    Images are stored as `write_mode` says (FFCV's "raw" or "jpg"), or, with `jpeg_fraction`, about
    that fraction of them as JPEG and the rest raw (`datasets.storage.fields.mixed_image_field`).

    `check(written)`, called once the writer is done with the temporary file `written` and before it
    is renamed to `path`, may edit it (`drop_rows`) or raise to discard it.

    Only a complete file ever has the name `path`: the writer fills a temporary name and renames it
    (`atomic_write`), which is removed when the conversion fails or is interrupted, so an
    interrupted conversion simply starts again.
    """
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        if path.exists():  # another process wrote it while we waited
            return path
        check_free_space(path.parent, estimated_bytes, space_hint)
        if fetch(path):  # the driver published it to the shared store (datasets.storage.shared_cache)
            return path
        from datasets.storage.ffcv_import import import_ffcv

        import_ffcv()
        from ffcv.fields import IntField, RGBImageField

        from datasets.storage.writer import write_indexed

        if jpeg_fraction is None:
            image_field = RGBImageField(write_mode=write_mode, max_resolution=max_resolution, jpeg_quality=jpeg_quality)
        else:
            from datasets.storage.fields import mixed_image_field

            image_field = mixed_image_field(jpeg_fraction, max_resolution, jpeg_quality)
        fields = {"image": image_field, "label": IntField()}
        def write(tmp: Path) -> None:
            # chunks of 16 rows (FFCV's default is 100): the workers finish together instead of one
            # converting the last 100 images alone
            write_indexed(tmp, fields, make_dataset(), num_workers, chunksize=16)
            if check is not None:  # may edit or refuse the written file: a refused one is removed, never renamed
                check(tmp)

        # interrupted (Ctrl-C, error): atomic_write leaves no half-written file behind
        atomic_write(path, write)
    return path


def read_labels(path: Path) -> np.ndarray:
    """All labels of a `.beton`, in file order (reads only the metadata table)."""
    from datasets.storage.ffcv_import import import_ffcv

    import_ffcv()
    from ffcv.reader import Reader

    return np.asarray(Reader(str(path)).metadata["f1"], dtype=np.int64)


def drop_rows(path: Path, rows: Sequence[int]) -> None:
    """Remove the samples `rows` from the FFCV file `path` in place; the other rows keep their order.

    For a file not yet renamed into place (an image that failed to decode was written as a
    placeholder row). Only the tables change: the header's sample count, the metadata table (the
    kept rows move up; the tail of its old space is left unused) and the allocation table at the end
    of the file (dropped samples' entries removed, sample ids renumbered; the file is truncated
    after it). The image bytes stay where they are, unreferenced. Checked against FFCV 1.0.2's
    `DatasetWriter` and `Reader` (format version 2); any other format version is refused.
    """
    from datasets.storage.ffcv_import import import_ffcv

    import_ffcv()
    from ffcv.types import ALLOC_TABLE_TYPE, CURRENT_VERSION, FieldDescType, HeaderType, get_handlers, get_metadata_type

    header = np.fromfile(path, dtype=HeaderType, count=1)  # one row, kept as an array to edit and write back
    if int(header["version"][0]) != 2 or CURRENT_VERSION != 2:
        raise RuntimeError(f"{path}: FFCV file format {header['version'][0]} (library {CURRENT_VERSION}); "
                           "drop_rows was checked against format 2 only")
    count = int(header["num_samples"][0])
    descriptors = np.fromfile(path, dtype=FieldDescType, count=int(header["num_fields"][0]), offset=HeaderType.itemsize)
    metadata_type = get_metadata_type(get_handlers(descriptors))
    metadata_at = HeaderType.itemsize + descriptors.nbytes
    metadata = np.fromfile(path, dtype=metadata_type, count=count, offset=metadata_at)
    table_at = int(header["alloc_table_ptr"][0])
    table = np.fromfile(path, dtype=ALLOC_TABLE_TYPE, offset=table_at)
    keep = np.ones(count, dtype=bool)
    keep[np.asarray(rows, dtype=np.int64)] = False
    new_id = np.cumsum(keep) - 1
    table = table[keep[table["sample_id"].astype(np.int64)]]
    table["sample_id"] = new_id[table["sample_id"].astype(np.int64)]
    header["num_samples"] = int(keep.sum())
    with open(path, "r+b") as f:
        f.write(header.tobytes())
        f.seek(metadata_at)
        f.write(metadata[keep].tobytes())
        f.seek(table_at)
        f.write(table.tobytes())
        f.truncate()
