"""Embedded sources, the .beton round trip and the quantity intervention."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from datasets import SourceError, get_source
from datasets.storage.beton import read_labels
from datasets.interventions import InterventionError, build_subset
from datasets.storage.loaders import make_loader

SMALL_CAM = dict(num_classes=6, train_size=120, eval_size=40, test_size=40)
SMALL_NET = dict(num_classes=10, images_per_class=12, val_per_class=3)


def test_synthcam_has_wilds_splits_and_long_tail():
    cam = get_source("synthcam")
    assert cam.splits == ("train", "id_val", "id_test", "val", "test")
    assert cam.eval_splits["id"] == "id_test" and cam.eval_splits["ood"] == "test"
    counts = np.bincount(cam.labels("train"), minlength=cam.num_classes)
    assert counts.max() > 5 * counts.min() > 0  # long-tailed, every species present
    loc = cam.locations
    assert set(loc["train"]) == set(loc["id_test"]) and not set(loc["train"]) & set(loc["test"])
    assert not set(loc["val"]) & set(loc["test"])  # OOD val and test are disjoint locations


def test_generation_is_deterministic_by_seed():
    a = get_source("synthnet", **SMALL_NET).render("train", 32, indices=[0, 7, 50])
    b = get_source("synthnet", **SMALL_NET).render("train", 32, indices=[0, 7, 50])
    c = get_source("synthnet", seed=1, **SMALL_NET).render("train", 32, indices=[0, 7, 50])
    assert a.dtype == np.uint8 and a.shape == (3, 32, 32, 3)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_synthnet_classes_are_imagenet_wnids():
    from datasets.hierarchy import imagenet_wnids, is_under

    net = get_source("synthnet")
    assert set(net.classes) <= set(imagenet_wnids())
    animals = sum(is_under(w, "animal.n.01") for w in net.classes)
    assert 0 < animals < len(net.classes)  # both animals and objects, for the semantics sweep


def test_beton_round_trip(tmp_path):
    cam = get_source("synthcam", **SMALL_CAM)
    path = cam.beton("id_test", 32)
    assert path.exists() and path.suffix == ".beton"
    assert np.array_equal(read_labels(path), cam.labels("id_test"))
    loader = make_loader(path, batch_size=16, resolution=32, num_workers=1, train=False)
    images, labels = zip(*[(x, y) for x, y in loader])
    images, labels = np.concatenate([x.numpy() for x in images]), np.concatenate([y.numpy() for y in labels])
    assert images.shape == (40, 3, 32, 32) and images.dtype == np.float32
    assert np.array_equal(labels, cam.labels("id_test"))  # sequential order = file order
    # the pixels are the rendered ones, normalised with ImageNet's mean/std
    raw = cam.render("id_test", 32, indices=[0])[0].astype(np.float32)
    mean, std = np.array([0.485, 0.456, 0.406]) * 255, np.array([0.229, 0.224, 0.225]) * 255
    assert np.allclose(images[0].transpose(1, 2, 0), (raw - mean) / std, atol=1e-4)
    # unchanged data is reused; a changed dataset gets another file
    assert cam.beton("id_test", 32) == path
    assert get_source("synthcam", **{**SMALL_CAM, "seed": 3}).beton("id_test", 32) != path
    assert not list(path.parent.glob(".*tmp*"))  # no temporary file left behind


@pytest.mark.parametrize("size", [60, 67, 119])
def test_quantity_is_class_balanced(size):
    net = get_source("synthnet", **SMALL_NET)
    sub = build_subset(net, "quantity", size, seed=0)
    assert len(sub.indices) == size == len(sub.labels)
    assert len(np.unique(sub.indices)) == size  # without replacement
    counts = np.bincount(sub.labels, minlength=sub.num_classes)
    assert counts.max() - counts.min() <= 1 and counts.sum() == size
    assert np.array_equal(sub.labels, net.labels("train")[sub.indices])  # all classes: labels unchanged
    assert sub.description["images_per_class"] == counts.tolist()


def test_quantity_is_deterministic_and_seeded():
    net = get_source("synthnet", **SMALL_NET)
    a, b = build_subset(net, "quantity", 50, seed=0), build_subset(net, "quantity", 50, seed=0)
    c = build_subset(net, "quantity", 50, seed=1)
    assert np.array_equal(a.indices, b.indices) and not np.array_equal(a.indices, c.indices)


def test_quantity_most_frequent_classes():
    cam = get_source("synthcam", **SMALL_CAM)
    counts = np.bincount(cam.labels("train"), minlength=cam.num_classes)
    top = np.sort(np.argsort(-counts, kind="stable")[:3])
    sub = build_subset(cam, "quantity", 3 * int(counts[top].min()), num_classes=3)
    assert sub.num_classes == 3 and set(cam.labels("train")[sub.indices]) == set(top)


def test_impossible_sizes_are_one_line_errors():
    net = get_source("synthnet", **SMALL_NET)
    with pytest.raises(InterventionError, match="at most 120") as err:
        build_subset(net, "quantity", 500)
    assert "\n" not in str(err.value)
    with pytest.raises(InterventionError, match="at least one image per class"):
        build_subset(net, "quantity", 5)
    with pytest.raises(InterventionError, match="unknown intervention 'bogus'"):
        build_subset(net, "bogus", 5)


def test_unknown_sources_and_missing_data_roots_are_one_line_errors(tmp_path):
    with pytest.raises(SourceError, match="unknown source 'nope'.*imagenet.*synthcam") as err:
        get_source("nope")
    assert "\n" not in str(err.value)
    # every source of the papers is registered; an on-disk one without its files says what to download
    with pytest.raises(SourceError, match=r"ImageNet not found: looked for train, val in .*imagenet.*download") as err:
        get_source("imagenet", data_root=tmp_path)
    assert "\n" not in str(err.value)


def test_importing_datasets_stays_light():
    import subprocess
    import sys

    code = ("import sys, datasets; from datasets import get_source; get_source('synthnet'); "
            "print(sorted(m for m in ('torch', 'ffcv', 'numba') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_fork_pools_workers_obey_sigterm_although_the_parent_handles_it_in_python():
    """`ray.init` leaves a Python SIGTERM handler in its process (a driver, this test session), and
    forked workers inherit it. `Pool.terminate()` ends a worker still waiting for the task queue's
    lock (which the parent then holds) only by SIGTERM: one that ignored it kept the `with` block
    ending the pool waiting for ever (seen once in a full run of the suite). A handler that does
    nothing makes the loss certain; an idle worker must still end at once."""
    import subprocess
    import sys

    # the worker is killed idle, holding the task queue's lock: the pool cannot be ended normally
    # after that, so the script leaves with os._exit
    code = ("import os, signal, time, psutil\n"
            "signal.signal(signal.SIGTERM, lambda *a: None)\n"
            "from datasets.processes import fork_pool\n"
            "pool = fork_pool(1)\n"
            "worker = pool.apply(os.getpid)\n"
            "os.kill(worker, signal.SIGTERM)\n"
            "deadline, ended = time.monotonic() + 20, False\n"
            "while not ended and time.monotonic() < deadline:\n"
            "    try:\n"
            "        ended = psutil.Process(worker).status() == psutil.STATUS_ZOMBIE\n"
            "    except psutil.NoSuchProcess:\n"
            "        ended = True\n"
            "    time.sleep(0.05)\n"
            "print('ended' if ended else 'alive', flush=True)\n"
            "for child in psutil.Process().children():  # the pool's workers, its replacement included\n"
            "    child.kill()\n"
            "os._exit(0)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ended", (out.stdout, out.stderr[-2000:])


def compiled_loader_calling(before_each_batch):
    """A compiled 48-image loader (batches of 8) whose first pipeline stage calls
    `before_each_batch(batch_number)` first, in FFCV's decoding thread; and its file."""
    path = get_source("synthnet", num_classes=4, images_per_class=12, val_per_class=2).beton("train", 32)
    loader = make_loader(path, 8, 32, 1, train=False)
    assert sum(len(y) for _, y in loader) == 48  # compiled and read once, whole
    (stages, outputs), batches = loader.code, []

    def wrapped(stage):
        def run(**args):
            batches.append(1)
            before_each_batch(len(batches))
            return stage(**args)
        return run

    loader.code = ([(wrapped(stage), defined) for stage, defined in stages[:1]] + stages[1:], outputs)
    return loader, path


def test_ffcvs_decoding_thread_deals_images_one_at_a_time():
    """A JPEG row costs ~2.5x a raw one: numba's default split of a batch into equal halves, fixed
    up front, leaves a thread idle at the end of each batch. The setting stays in FFCV's thread."""
    import numba

    seen = []
    loader, _ = compiled_loader_calling(lambda batch: seen.append(numba.get_parallel_chunksize()))
    assert sum(len(y) for _, y in loader) == 48
    assert seen == [1] * 6, seen
    assert numba.get_parallel_chunksize() == 0  # this thread's: numba's default


def test_a_failure_in_ffcvs_decoding_thread_reaches_the_training_loop():
    """FFCV's own iterator waits for ever when its decoding thread raises; ours raises in the reader."""
    from datasets.storage.loaders import LoaderThreadError

    def second_batch_fails(batch: int) -> None:
        if batch == 2:
            raise ValueError("page 3 is unreadable")

    loader, path = compiled_loader_calling(second_batch_fails)
    outcome: dict = {}

    def read() -> None:
        try:
            outcome["sizes"] = [len(y) for _, y in loader]
        except LoaderThreadError as error:
            outcome["error"] = error

    reader = threading.Thread(target=read, daemon=True)  # a hang fails the test instead of stalling the suite
    reader.start()
    reader.join(timeout=60)
    assert not reader.is_alive(), "the loop still waits for a batch that never comes"
    error = outcome["error"]
    assert str(path) in str(error) and "ValueError: page 3 is unreadable" in str(error)
    assert isinstance(error.__cause__, ValueError)
