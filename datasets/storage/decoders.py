"""FFCV image decoders with the flip and the normalisation fused into the decoding loop.

FFCV's stock training pipeline is three jitted stages, each a pass over the whole batch:
`RandomResizedCropRGBImageDecoder` writes uint8 crops, `RandomHorizontalFlip` copies every image
into a second buffer (flipped or not), `NormalizeImage` reads that buffer into float32. On a CPU
the two extra passes cost about as much as resizing the crop (profile in benchmarks/README.md:
6,070 img/s for the crops alone from raw pixels, 4,150 with the flip, 3,200 with both). Here each
image is cropped and resized into a small per-image buffer that is still in cache, then written
once into the output: mirrored or not while it is normalised (CPU), or flipped in place (uint8 for
the GPU, normalised there). The crop, its random draws and its resize are FFCV's own
(`get_random_crop`, `get_center_crop`, `libffcv.resize_crop`), so the pixels equal the stock
pipeline's (tests/test_decoders.py compares them).
"""
from __future__ import annotations

from dataclasses import replace
from typing import Callable

import numpy as np

from datasets.storage.ffcv_import import import_ffcv

import_ffcv()

from ffcv.fields.rgb_image import (  # noqa: E402
    IMAGE_MODES,
    ResizedCropRGBImageDecoder,
    get_center_crop,
    get_random_crop,
)
from ffcv.libffcv import imdecode, resize_crop  # noqa: E402
from ffcv.pipeline.allocation_query import AllocationQuery  # noqa: E402
from ffcv.pipeline.compiler import Compiler  # noqa: E402


def normalisation_table(mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """(256, 3) float32: `table[v, c]` = (v - mean[c]) / std[c], as FFCV's `NormalizeImage` builds it."""
    return ((np.arange(256)[:, None] - np.asarray(mean)[None, :]) / np.asarray(std)[None, :]).astype(np.float32)


class _FusedCropDecoder(ResizedCropRGBImageDecoder):
    """Decode (JPEG or raw rows alike), crop, resize, then flip with `flip_prob` and normalise with `table`.

    Without `table` the output is uint8 HWC (normalised later, on the GPU); with it, float32 HWC.
    """

    def __init__(self, output_size: tuple[int, int], flip_prob: float, table: np.ndarray | None):
        super().__init__(output_size)
        self.flip_prob = float(flip_prob)
        self.table = table

    def declare_state_and_memory(self, previous_state):
        state, (output, temp) = super().declare_state_and_memory(previous_state)
        if self.table is None:
            return state, (output, temp)
        floats = np.dtype("<f4")
        # the uint8 crop of each image, read back while it is still in cache
        return replace(state, dtype=floats), (AllocationQuery(output.shape, floats), temp, output)

    def generate_code(self) -> Callable:
        jpg = IMAGE_MODES["jpg"]
        mem_read = self.memory_read
        my_range = Compiler.get_iterator()
        imdecode_c = Compiler.compile(imdecode)
        resize_crop_c = Compiler.compile(resize_crop)
        get_crop_c = Compiler.compile(self.get_crop_generator)
        scale = np.array(self.scale) if isinstance(self.scale, tuple) else self.scale
        ratio = np.array(self.ratio) if isinstance(self.ratio, tuple) else self.ratio
        flip_prob, table = self.flip_prob, self.table

        def crop_into(image_data, field, temp_buffer, out):
            """FFCV's decode-crop-resize of one image (ResizedCropRGBImageDecoder.generate_code)."""
            height = np.uint32(field["height"])
            width = np.uint32(field["width"])
            if field["mode"] == jpg:
                imdecode_c(image_data, temp_buffer, height, width, height, width, 0, 0, 1, 1, False, False)
                source = temp_buffer.reshape(-1)[:3 * height * width].reshape(height, width, 3)
            else:
                source = image_data.reshape(height, width, 3)
            i, j, h, w = get_crop_c(height, width, scale, ratio)
            resize_crop_c(source, i, i + h, j, j + w, out)

        crop_into_c = Compiler.compile(crop_into)

        if table is None:
            def decode(batch_indices, my_storage, metadata, storage_state):
                destination, temp_storage = my_storage
                for dst_ix in my_range(len(batch_indices)):
                    field = metadata[batch_indices[dst_ix]]
                    out = destination[dst_ix]
                    crop_into_c(mem_read(field["data_ptr"], storage_state), field, temp_storage[dst_ix], out)
                    if np.random.rand() < flip_prob:  # mirror in place
                        rows, cols = out.shape[0], out.shape[1]
                        for r in range(rows):
                            for c in range(cols // 2):
                                for ch in range(3):
                                    left = out[r, c, ch]
                                    out[r, c, ch] = out[r, cols - 1 - c, ch]
                                    out[r, cols - 1 - c, ch] = left
                return destination[:len(batch_indices)]
        else:
            def decode(batch_indices, my_storage, metadata, storage_state):
                destination, temp_storage, crops = my_storage
                for dst_ix in my_range(len(batch_indices)):
                    field = metadata[batch_indices[dst_ix]]
                    crop = crops[dst_ix]
                    crop_into_c(mem_read(field["data_ptr"], storage_state), field, temp_storage[dst_ix], crop)
                    out = destination[dst_ix]
                    rows, cols = crop.shape[0], crop.shape[1]
                    first, step = (cols - 1, -1) if np.random.rand() < flip_prob else (0, 1)
                    for r in range(rows):
                        for c in range(cols):
                            src = first + step * c
                            out[r, c, 0] = table[crop[r, src, 0], 0]
                            out[r, c, 1] = table[crop[r, src, 1], 1]
                            out[r, c, 2] = table[crop[r, src, 2], 2]
                return destination[:len(batch_indices)]

        decode.is_parallel = True
        return decode


class RandomResizedCropFlipDecoder(_FusedCropDecoder):
    """FFCV's `RandomResizedCropRGBImageDecoder` + `RandomHorizontalFlip` [+ `NormalizeImage`], in one pass."""

    def __init__(self, output_size: tuple[int, int], scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), flip_prob: float = 0.5,
                 table: np.ndarray | None = None):
        super().__init__(output_size, flip_prob, table)
        self.scale, self.ratio = scale, ratio

    @property
    def get_crop_generator(self):
        return get_random_crop


class CenterCropDecoder(_FusedCropDecoder):
    """FFCV's `CenterCropRGBImageDecoder` [+ `NormalizeImage`], in one pass."""

    def __init__(self, output_size: tuple[int, int], ratio: float, table: np.ndarray | None = None):
        super().__init__(output_size, 0.0, table)
        self.scale, self.ratio = None, ratio

    @property
    def get_crop_generator(self):
        return get_center_crop
