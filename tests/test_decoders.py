"""The fused decoders (crop + flip + normalisation in one pass) against FFCV's stock stages, and the
mixed JPEG / raw storage of image files."""
from __future__ import annotations

import numpy as np
import pytest

from datasets.storage.beton import ensure_beton
from datasets.storage.ffcv_import import import_ffcv

import_ffcv()

from ffcv.fields.decoders import (  # noqa: E402
    CenterCropRGBImageDecoder,
    IntDecoder,
    RandomResizedCropRGBImageDecoder,
    SimpleRGBImageDecoder,
)
from ffcv.loader import Loader, OrderOption  # noqa: E402
from ffcv.reader import Reader  # noqa: E402
from ffcv.transforms import NormalizeImage, Squeeze, ToTensor  # noqa: E402

from datasets.storage.decoders import CenterCropDecoder, RandomResizedCropFlipDecoder, normalisation_table  # noqa: E402
from datasets.storage.loaders import IMAGENET_MEAN, IMAGENET_STD  # noqa: E402

IMAGES = 24


def _photos(shape_of, seed: int = 0) -> list[tuple[np.ndarray, int]]:
    """Smooth random images with texture (they compress like photos), one label each."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(IMAGES):
        h, w = shape_of(i)
        coarse = rng.uniform(0, 255, (h // 8 + 1, w // 8 + 1, 3))
        image = np.kron(coarse, np.ones((8, 8, 1)))[:h, :w] + rng.normal(0, 12, (h, w, 3))
        rows.append((np.clip(image, 0, 255).astype(np.uint8), i % 3))
    return rows


@pytest.fixture(scope="module")
def mixed_file(tmp_path_factory):
    """Images of varied sizes, about half stored as JPEG and half raw."""
    rows = _photos(lambda i: ((40, 56), (56, 40), (48, 48))[i % 3])
    path = tmp_path_factory.mktemp("decoders") / "mixed.beton"
    return ensure_beton(path, lambda: rows, 1 << 20, max_resolution=64, num_workers=2, jpeg_fraction=0.5)


def _batches(path, image_pipeline) -> np.ndarray:
    loader = Loader(str(path), batch_size=IMAGES, num_workers=1, order=OrderOption.SEQUENTIAL,
                    pipelines={"image": image_pipeline + [ToTensor()], "label": [IntDecoder(), ToTensor(), Squeeze()]})
    return np.concatenate([x.numpy() for x, _ in loader])


def test_mixed_storage_holds_both_formats(mixed_file):
    modes = Reader(str(mixed_file)).metadata["f0"]["mode"]
    assert 0 < (modes == 0).sum() < IMAGES  # FFCV's mode 0 is JPEG, 1 raw: both are in the file


@pytest.mark.parametrize("normalise", [True, False], ids=["float32", "uint8"])
def test_fused_centre_crop_equals_ffcv_stages(mixed_file, normalise):
    table = normalisation_table(IMAGENET_MEAN, IMAGENET_STD) if normalise else None
    ours = _batches(mixed_file, [CenterCropDecoder((24, 24), ratio=0.875, table=table)])
    stock = [CenterCropRGBImageDecoder((24, 24), ratio=0.875)]
    if normalise:
        stock.append(NormalizeImage(IMAGENET_MEAN, IMAGENET_STD, np.float32))
    np.testing.assert_array_equal(ours, _batches(mixed_file, stock))
    assert ours.dtype == (np.float32 if normalise else np.uint8)


@pytest.mark.parametrize("normalise", [True, False], ids=["float32", "uint8"])
def test_fused_random_crop_flips_about_half_of_the_images(tmp_path, normalise):
    """With the crop pinned to the whole image (scale 1, the images' own aspect ratio), each output is
    FFCV's resize of the image, mirrored or not."""
    rows = _photos(lambda i: (40, 60))
    path = ensure_beton(tmp_path / "same-size.beton", lambda: rows, 1 << 20, max_resolution=64, jpeg_fraction=0.5)
    table = normalisation_table(IMAGENET_MEAN, IMAGENET_STD) if normalise else None
    pinned = dict(scale=(1.0, 1.0), ratio=(1.5, 1.5))
    ours = _batches(path, [RandomResizedCropFlipDecoder((20, 30), **pinned, table=table)])
    stock = [RandomResizedCropRGBImageDecoder((20, 30), **pinned)]
    if normalise:
        stock.append(NormalizeImage(IMAGENET_MEAN, IMAGENET_STD, np.float32))
    want = _batches(path, stock)
    flipped = [np.array_equal(o, w[:, ::-1]) and not np.array_equal(o, w) for o, w in zip(ours, want)]
    kept = [np.array_equal(o, w) for o, w in zip(ours, want)]
    assert all(f or k for f, k in zip(flipped, kept))  # every image is the stock crop, mirrored or not
    assert 0 < sum(flipped) < IMAGES  # both happen (all 24 alike: odds 2 in 2**24)


def test_raw_rows_keep_the_pixels_and_the_choice_follows_the_content(tmp_path):
    rows = _photos(lambda i: (32, 32), seed=1)
    written = []
    for name in ("a", "b"):  # two conversions of the same images, 2 writer processes each
        path = ensure_beton(tmp_path / f"{name}.beton", lambda: rows, 1 << 20, max_resolution=32, num_workers=2,
                            jpeg_fraction=0.5)
        written.append((Reader(str(path)).metadata["f0"]["mode"], _batches(path, [SimpleRGBImageDecoder()])))
    (modes, pixels), (modes_again, _) = written
    np.testing.assert_array_equal(modes, modes_again)  # same images, same storage, whichever worker wrote them
    originals = np.stack([image for image, _ in rows])
    raw = modes == 1
    assert raw.any() and not raw.all()
    np.testing.assert_array_equal(pixels[raw], originals[raw])  # raw rows: the very pixels written
    error = np.abs(pixels[~raw].astype(int) - originals[~raw]).mean()
    assert 0 < error < 16  # JPEG rows: lossy, mostly the added noise (std 12, mean |noise| ~9.6) smoothed away


@pytest.mark.parametrize("fraction, mode", [(0.0, 1), (1.0, 0)])
def test_fraction_zero_and_one_store_one_format(tmp_path, fraction, mode):
    rows = _photos(lambda i: (16, 16))
    path = ensure_beton(tmp_path / "one.beton", lambda: rows, 1 << 20, max_resolution=16, jpeg_fraction=fraction)
    assert set(Reader(str(path)).metadata["f0"]["mode"].tolist()) == {mode}
