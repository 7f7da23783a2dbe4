"""FFCV's `.beton` writer, with a failure in a worker process reported instead of waited on (`write_indexed`).

FFCV's `DatasetWriter` waits for its worker processes by polling a shared count of rows until every
row is counted, then for one list of page allocations per process. A worker that raises dies
before doing either, and the writer waits for ever: a bug in a source's `__getitem__`, or state a
source misreads in a forked process, hung a sweep driver without a word.

The job each worker runs here is FFCV's (`worker_job_indexed_dataset`: take a chunk of rows, encode
each with `handle_sample`, count the chunk, and at the end hand over the allocations), except that
an exception in a chunk is caught: the worker writes its traceback to a file, tells every worker to
skip the rows still to come, and goes on counting chunks, so the writer finishes at once.
`write_indexed` then raises `WriterProcessError` with the traceback, and the caller discards the
incomplete file. A worker killed outright (SIGKILL, the OOM killer) runs no handler and still leaves
FFCV waiting.
"""
from __future__ import annotations

import multiprocessing
import os
import tempfile
import traceback
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np


class WriterProcessError(RuntimeError):
    """A writer process raised while converting rows; the message holds its traceback."""


def _guarded_job(input_queue, metadata_sm, metadata_type, fields, allocator, done_number, allocations_queue,
                 dataset, failed, failures_dir: str) -> None:
    """FFCV's worker job, counting a chunk whether or not its rows were written (see the module)."""
    from ffcv.writer import handle_sample

    metadata = np.frombuffer(metadata_sm.buf, dtype=metadata_type)
    with allocator:  # flushes the pages this process filled
        while (chunk := input_queue.get()) is not None:
            if not failed.is_set():
                try:
                    for dest_ix, source_ix in chunk:
                        handle_sample(dataset[source_ix], dest_ix, metadata_type.names, metadata, allocator, fields)
                except Exception:
                    (Path(failures_dir) / f"{os.getpid()}.txt").write_text(traceback.format_exc())
                    failed.set()
            with done_number.get_lock():
                done_number.value += len(chunk)
    allocations_queue.put(allocator.allocations)


def write_indexed(path: Path, fields: Mapping, dataset: Sequence, num_workers: int, chunksize: int) -> None:
    """Write every row of `dataset` to the FFCV file `path` in order, as `DatasetWriter.from_indexed_dataset`
    does, with `num_workers` processes taking `chunksize` rows at a time. Raises `WriterProcessError` when a
    row raised in a process (the file is then incomplete)."""
    from ffcv.utils import chunks
    from ffcv.writer import DatasetWriter

    rows = list(enumerate(range(len(dataset))))  # (row in the file, index in the dataset)
    workers = max(1, num_workers)
    failed = multiprocessing.Event()  # FFCV forks its workers from this process (multiprocessing's default)
    with tempfile.TemporaryDirectory(prefix="beton-writer-") as failures_dir:
        writer = DatasetWriter(str(path), fields, num_workers=workers)
        writer._write_common(len(rows), chunks(rows, chunksize), _guarded_job, (dataset, failed, failures_dir))
        failures = sorted(Path(failures_dir).iterdir())
        if failures:
            raise WriterProcessError(f"a process writing {path.name} failed ({len(failures)} of {workers} did); "
                                     f"its traceback:\n{failures[0].read_text()}")
