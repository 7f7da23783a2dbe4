"""The synthetic shifts of `support_shift`, measured on the `.beton` files they write.

Expected values come from the images themselves: each written image's tint colour is recovered
from the untinted base render (tinted = 0.75 * base + 0.25 * colour), a class's own colour is the
colour most of its reference images carry, and agreement counts are compared with p by a binomial
interval from scipy.
"""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from datasets import SourceError, get_source

BASE = dict(num_classes=6, images_per_class=60, val_per_class=40, seed=1)


def written_images(path) -> tuple[np.ndarray, np.ndarray]:
    """Every (image NHWC uint8, label) of a raw 32-px `.beton`, in file order, through FFCV."""
    from ffcv.fields.decoders import IntDecoder, SimpleRGBImageDecoder
    from ffcv.loader import Loader, OrderOption

    loader = Loader(str(path), batch_size=100, num_workers=1, order=OrderOption.SEQUENTIAL, drop_last=False,
                    pipelines={"image": [SimpleRGBImageDecoder()], "label": [IntDecoder()]})
    images, labels = zip(*[(np.array(x), np.array(y).ravel()) for x, y in loader])  # copies: FFCV reuses its buffers
    return np.concatenate(images), np.concatenate(labels)


def recovered_colours(tinted: np.ndarray, base: np.ndarray) -> np.ndarray:
    """(N, 3) tint colour in [0, 1] of each image, from its untinted version (alpha 0.25)."""
    estimate = (tinted.astype(float) - 0.75 * base.astype(float)) / (0.25 * 255)
    return estimate.reshape(len(tinted), -1, 3).mean(axis=1)


def colour_ids(colours: np.ndarray) -> np.ndarray:
    """Group recovered colours that are the same colour (within rounding noise) under one id."""
    ids, centres = np.empty(len(colours), dtype=int), []
    for i, c in enumerate(colours):
        near = [k for k, centre in enumerate(centres) if np.abs(centre - c).max() < 0.05]
        if not near:
            centres.append(c)
            near = [len(centres) - 1]
        ids[i] = near[0]
    return ids


def binomial_ok(hits: int, n: int, p: float) -> bool:
    lo, hi = stats.binom.interval(0.999, n, p)
    return lo <= hits <= hi


@pytest.mark.parametrize("p", [0.5, 0.9])
def test_tint_predicts_the_label_with_probability_p_and_not_on_the_shifted_set(p):
    src = get_source("support_shift", base_options=BASE, p=p, shifts=["tint"])
    base = get_source("synthnet", **BASE)
    train_images, train_labels = written_images(src.beton("train", 32))
    assert np.array_equal(train_labels, base.labels("train"))
    ids = colour_ids(recovered_colours(train_images, base.render("train", 32)))
    assert len(set(ids)) == BASE["num_classes"]  # one colour per class, every one used
    own = np.array([np.bincount(ids[train_labels == k]).argmax() for k in range(BASE["num_classes"])])
    assert len(set(own)) == BASE["num_classes"]  # the classes' colours differ
    hits = int((ids == own[train_labels]).sum())
    assert binomial_ok(hits, len(ids), p), (hits, len(ids), p)

    test_images, test_labels = written_images(src.beton("test", 32))
    base_val = base.render("val", 32)
    assert np.array_equal(test_labels, base.labels("val"))
    test_ids = colour_ids(np.concatenate([recovered_colours(test_images, base_val),
                                          recovered_colours(train_images, base.render("train", 32))]))
    # the same colour grouping over both sets: map the test ids through the training ids' own colours
    train_part = test_ids[len(test_images):]
    own_test = np.array([np.bincount(train_part[train_labels == k]).argmax() for k in range(BASE["num_classes"])])
    hits = int((test_ids[:len(test_images)] == own_test[test_labels]).sum())
    assert binomial_ok(hits, len(test_images), 1 / BASE["num_classes"]), hits


def test_reference_test_set_is_tinted_like_the_reference():
    src = get_source("support_shift", base_options=BASE, p=0.8, shifts=["tint"])
    base = get_source("synthnet", **BASE)
    images, labels = written_images(src.beton("id_test", 32))
    train_images, train_labels = written_images(src.beton("train", 32))
    ids = colour_ids(np.concatenate([recovered_colours(images, base.render("val", 32)),
                                     recovered_colours(train_images, base.render("train", 32))]))
    train_ids = ids[len(images):]
    own = np.array([np.bincount(train_ids[train_labels == k]).argmax() for k in range(BASE["num_classes"])])
    assert binomial_ok(int((ids[:len(images)] == own[labels]).sum()), len(images), 0.8)


def test_out_of_support_sets_of_an_untinted_reference_are_tinted_and_flipped():
    src = get_source("support_shift", base_options=BASE, p=None, shifts=["tint", "flip"])
    base = get_source("synthnet", **BASE)
    train_images, _ = written_images(src.beton("train", 32))
    assert np.array_equal(train_images, base.render("train", 32))  # untinted reference: the base's images
    reference, _ = written_images(src.beton("id_test", 32))
    base_val = base.render("val", 32)
    assert np.array_equal(reference, base_val)
    test_images, test_labels = written_images(src.beton("test", 32))
    shift = src.domains("test")
    n = len(base_val)
    assert list(shift[:n]) == ["tint"] * n and list(shift[n:]) == ["flip"] * n
    assert np.array_equal(test_images[n:], base_val[:, ::-1])  # upside down, nothing else
    assert not np.array_equal(test_images[n:], base_val)
    colours = recovered_colours(test_images[:n], base_val)
    assert np.abs(colours - colours.round(0)).max() < 1  # sanity: a colour in [0, 1] per channel
    assert len(set(colour_ids(colours))) == BASE["num_classes"]
    assert set(src.evaluation_sets()) == {"id", "ood", "ood_tint", "ood_flip"}
    assert src.describe()["support"] == {"tint": "out-of-support", "flip": "out-of-support"}


def test_transforms_are_deterministic_per_image_and_seed():
    a = get_source("support_shift", base_options=BASE, p=0.7).plan("train")["colour"]
    b = get_source("support_shift", base_options=BASE, p=0.7).plan("train")["colour"]
    c = get_source("support_shift", base_options=BASE, p=0.7, seed=3).plan("train")["colour"]
    assert np.array_equal(a, b) and not np.array_equal(a, c)


@pytest.mark.parametrize("options, words", [
    (dict(p=1.0), "p=1.0 is not a probability in (0, 1)"),
    (dict(p=0), "p=0 is not a probability in (0, 1)"),
    (dict(p=-0.2), "not a probability"),
    (dict(shifts=["tint", "rotate"]), "unknown shift 'rotate'; shifts: tint, flip"),
    (dict(base="nosuchsource"), "unknown source 'nosuchsource'"),
])
def test_bad_shift_options_are_one_line_source_errors(options, words):
    with pytest.raises(SourceError) as error:
        get_source("support_shift", **{"base_options": BASE, **options})
    assert words in str(error.value) and "\n" not in str(error.value)
