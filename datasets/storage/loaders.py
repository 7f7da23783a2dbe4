"""FFCV loaders over `.beton` files. Pipelines are lists, as in FFCV's examples; the GPU variant
moves uint8 batches with `ToDevice` and normalises them on the GPU, the CPU one normalises in the
jitted decoding stage, fused with the crop and the flip (`datasets.storage.decoders`).

FFCV decodes each epoch in a thread of its own (`EpochIterator`); when that thread raises, FFCV's
consumer waits for the next batch for ever, so a trial would hang holding its CPUs or GPU. Our
`Loader` hands the thread's exception to the loop that reads the batches (`LoaderThreadError`),
and that thread deals a batch's images to numba's threads one at a time.
"""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from queue import Full

import numba
import numpy as np
import torch

from datasets.storage.ffcv_import import import_ffcv

import_ffcv()  # before FFCV's own imports: skips ~4 s of numba compilation (see ffcv_import.py)

from ffcv.fields.decoders import IntDecoder  # noqa: E402
from ffcv.loader import Loader as FFCVLoader  # noqa: E402
from ffcv.loader import OrderOption  # noqa: E402
from ffcv.loader.epoch_iterator import EpochIterator  # noqa: E402
from ffcv.pipeline.compiler import Compiler  # noqa: E402
from ffcv.transforms import Squeeze, ToDevice, ToTensor, ToTorchImage  # noqa: E402

from datasets.storage.decoders import CenterCropDecoder, RandomResizedCropFlipDecoder, normalisation_table  # noqa: E402

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406]) * 255
IMAGENET_STD = np.array([0.229, 0.224, 0.225]) * 255


class LoaderThreadError(RuntimeError):
    """FFCV's decoding thread raised while preparing a batch (the cause is chained)."""


class _CheckedEpochIterator(EpochIterator):
    """FFCV's `EpochIterator`, whose thread passes its exception on to the reader of the batches (it
    ends the epoch as FFCV does, `None` in its queue, and the reader raises the recorded error) and
    hands the images of a batch to numba's threads one at a time."""

    error: BaseException | None = None  # set by the thread before it ends the epoch

    def run(self) -> None:
        # numba's prange would split each batch into one equal run of images per thread up front; a
        # JPEG row costs ~2.5x a raw one, so the thread dealt fewer JPEGs waited at the end of every
        # batch (CPU/wall 1.86 of 2 cores). One image at a time keeps both busy: 1.95, +3-5% img/s
        # (benchmarks/README.md). The setting is this thread's own: no other numba code sees it.
        try:  # both inside: a failure of either reaches the reader instead of hanging it
            numba.set_parallel_chunksize(1)
            super().run()
        except BaseException as error:  # noqa: BLE001 (raised again, chained, where the batches are read)
            self.error = error
            while not self.terminate_event.is_set():
                try:
                    self.output_queue.put(None, timeout=0.5)
                    return
                except Full:
                    continue

    def __next__(self):
        try:
            return super().__next__()
        except StopIteration:
            if self.error is None:
                raise
            raise LoaderThreadError(f"reading {self.loader.reader.file_name} failed in FFCV's decoding thread: "
                                    f"{type(self.error).__name__}: {self.error}") from self.error


class Loader(FFCVLoader):
    """FFCV's `Loader`, its epochs read through `_CheckedEpochIterator` (FFCV's `__iter__` otherwise)."""

    def __iter__(self):
        Compiler.set_num_threads(self.num_workers)
        order = self.next_traversal_order()
        selected_order = order[:len(self) * self.batch_size]
        self.next_epoch += 1
        if self.code is None or self.recompile:  # compiled at the first epoch
            self.generate_code()
        return _CheckedEpochIterator(self, selected_order)


class Normalize(torch.nn.Module):
    """uint8 NCHW -> float32 normalised with ImageNet's mean and std, on the GPU (after `ToDevice`)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD, dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.float() - self.mean.to(x.device)) / self.std.to(x.device)


def make_loader(
    path: Path,
    batch_size: int,
    resolution: int,
    num_workers: int,
    train: bool,
    indices: np.ndarray | None = None,
    seed: int = 0,
    device: str = "cpu",
    crop_scale: float | None = None,
    crop_ratio: float = 1.0,
):
    """An FFCV Loader yielding (float image batch NCHW normalised, int64 labels).

    The pipeline is a list, as in FFCV's examples; the GPU variant normalises after `ToDevice`.
    `crop_scale` selects the ImageNet training augmentation: a random resized crop of area
    fraction (crop_scale, 1) plus a horizontal flip (the reference recipe uses 0.08). Without it
    the image is centre-cropped with `crop_ratio` of its shorter side and resized: 0.875 for
    ImageNet evaluation (Resize(256) + CenterCrop(224)), 1.0 for the whole square frame as WILDS
    fine-tunes (no augmentation).
    """
    size = (resolution, resolution)
    on_gpu = device != "cpu"
    # On a CPU the decoder also normalises (FFCV's lookup table), fused with the crop and the flip in
    # one jitted pass per image: a torch op on the finished batch cost more than decoding it, and
    # FFCV's separate flip and normalisation stages cost as much as the crop (benchmarks/README.md).
    # On a GPU uint8 crosses (4x fewer bytes than float32) and is normalised there.
    table = None if on_gpu else normalisation_table(IMAGENET_MEAN, IMAGENET_STD)
    if crop_scale is not None:
        image_pipeline = [RandomResizedCropFlipDecoder(size, scale=(crop_scale, 1.0), table=table)]
    else:
        image_pipeline = [CenterCropDecoder(size, ratio=crop_ratio, table=table)]
    if on_gpu:
        image_pipeline += [ToTensor(), ToDevice(torch.device(device), non_blocking=True), ToTorchImage(), Normalize()]
    else:
        image_pipeline += [ToTensor(), ToTorchImage()]
    label_pipeline = [IntDecoder(), ToTensor(), Squeeze()]
    if on_gpu:
        label_pipeline += [ToDevice(torch.device(device), non_blocking=True)]

    return Loader(
        str(path),
        batch_size=batch_size,
        num_workers=num_workers,
        order=OrderOption.RANDOM if train else OrderOption.SEQUENTIAL,
        drop_last=train,
        seed=seed,
        indices=None if indices is None else np.asarray(indices),
        pipelines={"image": image_pipeline, "label": label_pipeline},
    )


def retarget(loader: Loader, indices: np.ndarray | None, seed: int) -> Loader:
    """Point a compiled loader at other rows of its file (and another shuffle seed), keeping its JIT.

    FFCV's compiled pipeline depends on the file's fields and the pipeline, never on the rows read
    or their order (`Loader.indices` only feeds the traversal order), so this is what a new
    `Loader(indices=..., seed=...)` over the same file would be, minus seconds of numba compilation.
    """
    loader.indices = np.arange(loader.reader.num_samples, dtype="uint64") if indices is None else np.array(indices)
    loader.seed = seed
    loader.traversal_order = type(loader.traversal_order)(loader)
    loader.next_epoch = 0
    loader.first_traversal_order = loader.next_traversal_order()  # what len(loader) counts
    return loader


_POOL: OrderedDict[tuple, Loader] = OrderedDict()
POOL_SIZE = 16


def shared_loader(path: Path, batch_size: int, resolution: int, num_workers: int, train: bool, seed: int = 0,
                  device: str = "cpu", indices: np.ndarray | None = None, crop_scale: float | None = None,
                  crop_ratio: float = 1.0) -> Loader:
    """`make_loader`, compiled once per process per (file, pipeline) and re-pointed at `indices` and `seed`.

    FFCV JIT-compiles every new Loader (seconds each, more than a small cell's training). A trial
    builds a loader per phase, split and subset, and Tune reuses a trial's process for the next
    cell (`reuse_actors`): cells that read the same files (every cell's target; every subset of
    one pre-training source) share one compiled loader per pipeline. Callers set
    `loader.next_epoch` before iterating, so a shared loader's order is the same as a new one's.
    One user at a time: a process trains one cell at a time.
    """
    stat = Path(path).stat()  # a file replaced under the same name is another file
    key = (str(path), stat.st_ino, stat.st_mtime_ns, batch_size, resolution, num_workers, train, device, crop_scale,
           crop_ratio)
    loader = _POOL.pop(key, None)
    if loader is None:
        loader = make_loader(path, batch_size, resolution, num_workers, train, indices, seed, device, crop_scale,
                             crop_ratio)
    else:
        retarget(loader, indices, seed)
    _POOL[key] = loader
    while len(_POOL) > POOL_SIZE:
        _POOL.popitem(last=False)
    return loader
