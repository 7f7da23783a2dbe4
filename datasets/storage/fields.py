"""FFCV fields for writing: images stored part JPEG, part raw pixels, chosen per image from its content.

FFCV's ImageNet example stores half of the images raw (`write_mode='proportion'`,
`compress_probability=0.5`, JPEG quality 90): a raw image costs no decoding when it is read, a JPEG
one a full decode. FFCV draws each image's format with `np.random.rand()` in its writer processes,
so two conversions of the same files differ. `mixed_image_field` makes the choice from the content
instead (`stored_as_jpeg`: a CRC-32 of the image file, or of the pixels when there is no file): the
same images are stored the same way, whichever process or node writes them.

A reader that decides for itself hands the field a `StoredJpeg` (a JPEG file to store as it is:
no decoding and encoding again, nothing more lost) or a `DecidedImage` (pixels and their format).
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from functools import partial

import numpy as np

from datasets.storage.ffcv_import import import_ffcv

import_ffcv()

from ffcv.fields import RGBImageField  # noqa: E402
from ffcv.fields.rgb_image import IMAGE_MODES  # noqa: E402


def stored_as_jpeg(content: bytes, jpeg_fraction: float) -> bool:
    """Whether the image with these bytes is stored as JPEG: their CRC-32 below `jpeg_fraction` of its range."""
    return zlib.crc32(content) < jpeg_fraction * 2**32


@dataclass(frozen=True)
class StoredJpeg:
    """A JPEG file stored as it is: its bytes and its image's size (checked to decode)."""

    data: bytes
    height: int
    width: int


@dataclass(frozen=True)
class DecidedImage:
    """Decoded pixels (uint8 HxWx3) and whether their row is stored as JPEG (re-encoded) or raw."""

    pixels: np.ndarray
    as_jpeg: bool


def mixed_image_field(jpeg_fraction: float, max_resolution: int, jpeg_quality: int = 90) -> RGBImageField:
    """An `RGBImageField` storing about `jpeg_fraction` of the images as JPEG and the rest as raw pixels.

    A plain `RGBImageField` whose `encode` picks the mode per image: FFCV's writer records a field's
    type by its exact class (a subclass would be written as an unknown custom field), and its reader
    decodes both modes of an `RGBImageField`. Rows may be pixels, a `DecidedImage` or a `StoredJpeg`.
    """
    if not 0.0 <= jpeg_fraction <= 1.0:
        raise ValueError(f"jpeg_fraction must be within [0, 1], got {jpeg_fraction}")
    field = RGBImageField(write_mode="jpg", max_resolution=max_resolution, jpeg_quality=jpeg_quality)
    field.encode = partial(_encode_mixed, field, jpeg_fraction)
    return field


def _encode_mixed(field: RGBImageField, jpeg_fraction: float, destination, image, malloc) -> None:
    if isinstance(image, StoredJpeg):  # the file itself, where RGBImageField.encode would store its own JPEG
        destination["mode"] = IMAGE_MODES["jpg"]
        destination["height"], destination["width"] = image.height, image.width
        destination["data_ptr"], storage = malloc(len(image.data))
        storage[:] = np.frombuffer(image.data, dtype=np.uint8)
        return
    if isinstance(image, DecidedImage):
        pixels, as_jpeg = image.pixels, image.as_jpeg
    else:
        pixels = np.asarray(image)
        as_jpeg = stored_as_jpeg(np.ascontiguousarray(pixels[::7, ::7]).tobytes(), jpeg_fraction)
    # a writer process encodes one image at a time: the mode is set for this call only
    field.write_mode = "jpg" if as_jpeg else "raw"
    RGBImageField.encode(field, destination, pixels, malloc)
