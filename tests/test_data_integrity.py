"""Data integrity: the one atomic-write helper, versioned `.npz` caches instead of pickles, generator
versions in cache keys, images that fail during conversion, and index files naming paths outside
the dataset folder."""
from __future__ import annotations

import errno
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from datasets import get_source
from datasets.readers.image_files import Scan
from datasets.sources import SourceError
from datasets.storage import cache_files
from datasets.storage.atomic import atomic_write
from datasets.storage.beton import read_labels
from layouts import write_domainnet, write_folder


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if ".tmp" in p.name)


def test_atomic_write_fsyncs_before_rename(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}"))),
                                                  real_fsync(fd)))
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append(("replace", str(b))), real_replace(a, b)))
    target = tmp_path / "out.json"
    atomic_write(target, "new")
    assert target.read_text() == "new" and leftovers(tmp_path) == []
    kinds = [(kind, Path(path).name if kind == "replace" else Path(path).name.startswith(".out.json.tmp"))
             for kind, path in events]
    # the data file is flushed, renamed, then the folder is flushed (so the rename survives a power loss)
    assert kinds == [("fsync", True), ("replace", "out.json"), ("fsync", False)]
    assert events[2][1] == str(tmp_path)


@pytest.mark.parametrize("where", ["write", "fsync"])
def test_atomic_write_on_enospc_keeps_the_old_file_and_leaves_no_temp(tmp_path, monkeypatch, where):
    target = tmp_path / "state.pt"
    target.write_bytes(b"old")
    full = OSError(errno.ENOSPC, "No space left on device")

    def writer(tmp: Path) -> None:
        tmp.write_bytes(b"half")
        if where == "write":
            raise full

    if where == "fsync":
        monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(full))
    with pytest.raises(OSError) as err:
        atomic_write(target, writer)
    assert err.value.errno == errno.ENOSPC
    assert target.read_bytes() == b"old" and leftovers(tmp_path) == []


def test_npz_cache_round_trip_and_rebuilds_stale_or_corrupt(tmp_path, capsys):
    value = {"classes": ["a", "b"], "per": {("clipart", "train"): Scan(["x.jpg", "y.jpg"], np.array([0, 1]),
                                                                        np.array([10, -1]),
                                                                        np.array(["clipart", "clipart"], dtype=object))},
             "none": None, "systems": [np.ones((2, 7)), np.zeros((3, 7))]}
    path = tmp_path / "c.npz"
    builds = []

    def build():
        builds.append(1)
        return value

    for _ in range(2):
        got = cache_files.cached(path, 3, build, types=(Scan,))
    assert len(builds) == 1  # the second call read the file
    scan = got["per"][("clipart", "train")]
    assert scan.files == ["x.jpg", "y.jpg"] and scan.labels.tolist() == [0, 1] and scan.sizes.tolist() == [10, -1]
    assert scan.domains.tolist() == ["clipart", "clipart"] and got["none"] is None
    assert [a.shape for a in got["systems"]] == [(2, 7), (3, 7)] and got["classes"] == ["a", "b"]

    cache_files.cached(path, 4, build, types=(Scan,))  # another version: rebuilt
    assert len(builds) == 2 and "version 3" in capsys.readouterr().err
    path.write_bytes(path.read_bytes()[:100])  # cut short
    cache_files.cached(path, 4, build, types=(Scan,))
    assert len(builds) == 3 and f"cache {path}: rebuilt" in capsys.readouterr().err
    assert cache_files.load(path, 4, types=(Scan,))["classes"] == ["a", "b"]


class _Evil:
    def __reduce__(self):
        return (Path.touch, (Path(os.environ["EVIL_MARKER"]),))


def test_npz_cache_never_unpickles(tmp_path, monkeypatch):
    marker = tmp_path / "ran"
    monkeypatch.setenv("EVIL_MARKER", str(marker))
    path = tmp_path / "c.npz"
    np.savez(path, __header__=np.array('{"format": 1, "version": 1, "tree": {"__array__": "a0"}}'),
             a0=np.array([_Evil()], dtype=object))
    assert pickle.loads(pickle.dumps(_Evil())) is None and marker.exists()  # the payload does run when unpickled
    marker.unlink()
    assert cache_files.cached(path, 1, lambda: "rebuilt") == "rebuilt"
    assert not marker.exists()


def test_scans_and_fractaldb_systems_are_versioned_npz(tmp_path, isolated_cache, monkeypatch, capsys):
    write_folder(tmp_path)
    get_source("folder", tmp_path, path="stable_diffusion").labels("train")
    assert list((isolated_cache / "scans").glob("*.npz")) and not list(isolated_cache.rglob("*.pkl"))

    from datasets.generators.fractaldb import FractalDB

    options = {"num_classes": 2, "images_per_class": 2, "val_per_class": 1, "seed": 7}
    src = get_source("fractaldb", **options)
    systems = src.systems()
    files = list((isolated_cache / "fractaldb").glob("*.npz"))
    assert len(files) == 1 and not list((isolated_cache / "fractaldb").glob("*.pkl"))
    capsys.readouterr()
    old_hash = src.content_hash("train")
    monkeypatch.setattr(FractalDB, "generator_version", FractalDB.generator_version + 1)
    newer = get_source("fractaldb", **options)
    assert newer.content_hash("train") != old_hash  # its .beton files get new names: rebuilt, not reused
    again = newer.systems()
    assert "rebuilt" in capsys.readouterr().err  # the cached systems of the older generator are not reused
    assert all(np.array_equal(a, b) for a, b in zip(systems, again))


def test_generated_sources_hash_their_generator_version(monkeypatch):
    import datasets.generators.synthetic as synthetic

    src = get_source("synthnet", num_classes=4, images_per_class=2, val_per_class=1)
    before = src.content_hash("train")
    monkeypatch.setattr(synthetic, "RENDER_VERSION", synthetic.RENDER_VERSION + 1)
    assert src.content_hash("train") != before
    monkeypatch.undo()
    monkeypatch.setattr(type(src), "generator_version", type(src).generator_version + 1)
    assert src.content_hash("train") != before


def test_image_failing_during_conversion_is_skipped_and_counted(tmp_path):
    base = write_folder(tmp_path, per_class=4)
    src = get_source("folder", tmp_path, path="stable_diffusion")
    assert src.num_skipped("train") == 0
    listed = src.scans["train"].files
    victim = listed[1]
    # After the check, the file changes on disk without changing its size (so the content hash is the same).
    size = (base / victim).stat().st_size
    (base / victim).write_bytes(b"\0" * size)
    path = src.beton("train", 32)
    log = src.skipped_log("train").read_text()
    assert victim in log and "after the check" in log and log.startswith(f"# 1 of {len(listed)} images")
    assert src.num_skipped("train") == 1
    kept_labels = np.array([y for f, y in zip(listed, src.scans["train"].labels) if f != victim])
    assert read_labels(path).tolist() == kept_labels.tolist() == src.labels("train").tolist()
    assert not [p for p in path.parent.iterdir() if ".tmp" in p.name or ".failed" in p.name]
    # a new process reads the same: the skipped log is the record
    assert get_source("folder", tmp_path, path="stable_diffusion").labels("train").tolist() == kept_labels.tolist()


@pytest.mark.parametrize("entry", ["../../outside.jpg", "/etc/hostname", "clipart/../../x.jpg"])
def test_index_naming_paths_outside_the_data_root_is_refused(tmp_path, entry):
    base = write_domainnet(tmp_path, domains=("clipart", "sketch"))
    index = base / "clipart_train.txt"
    index.write_text(index.read_text() + f"{entry} 0\n")
    with pytest.raises(SourceError) as err:
        get_source("domainnet", tmp_path, domains=["clipart", "sketch"])
    assert str(index) in str(err.value) and repr(entry) in str(err.value) and "\n" not in str(err.value)


def test_conversion_before_any_labels_is_the_check(tmp_path, isolated_cache, monkeypatch):
    """`beton()` of a split nobody asked labels of yet decodes each image once: no separate check."""
    from datasets.readers.image_files import ImageFileSource
    from datasets.storage.loaders import make_loader
    from layouts import WNIDS, add_corrupt_images, class_color, write_imagenet

    write_imagenet(tmp_path)
    corrupt = {p.name for p in add_corrupt_images(tmp_path / "imagenet" / "train" / WNIDS[1])}

    def no_check(*args, **kwargs):
        raise AssertionError("the separate check ran")

    monkeypatch.setattr(ImageFileSource, "_check", no_check)
    src = get_source("imagenet", tmp_path)
    listed = src.scans["train"].files
    path = src.beton("train", 32)
    # expected from the listing itself: every listed file but the three corrupt ones, in listing order
    expected = [int(y) for f, y in zip(listed, src.scans["train"].labels) if Path(f).name not in corrupt]
    assert len(listed) == 15 and len(expected) == 12
    log = src.skipped_log("train").read_text()
    assert log.startswith("# 3 of 15 images") and "after the check" not in log
    assert {Path(line.split("\t")[0]).name for line in log.splitlines()[1:]} == corrupt
    assert src.num_skipped("train") == 3
    assert read_labels(path).tolist() == expected == src.labels("train").tolist()
    # the rows left after the corrupt ones were dropped still point at their own images
    images, labels = zip(*make_loader(path, batch_size=4, resolution=16, num_workers=1, train=False))
    labels = np.concatenate([y.numpy() for y in labels])
    pixels = np.concatenate([x.numpy() for x in images]).transpose(0, 2, 3, 1)
    pixels = pixels * np.array([0.229, 0.224, 0.225]) * 255 + np.array([0.485, 0.456, 0.406]) * 255
    assert labels.tolist() == expected
    for image, label in zip(pixels, labels):
        assert np.abs(image.mean(axis=(0, 1)) - class_color(int(label))).max() < 12
    assert not [p for p in path.parent.iterdir() if ".tmp" in p.name or ".failed" in p.name]
    # the log is the record that the check ran: a new process reads it, decodes nothing
    assert get_source("imagenet", tmp_path).labels("train").tolist() == expected


def test_drop_rows_keeps_the_other_rows_in_order(tmp_path, isolated_cache):
    from datasets.storage.beton import drop_rows, ensure_beton
    from datasets.storage.loaders import make_loader

    rng = np.random.default_rng(0)
    rows = [(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), label) for label in range(10)]
    path = ensure_beton(tmp_path / "ten.beton", lambda: rows, 10 * 512, max_resolution=8,
                        check=lambda written: drop_rows(written, [0, 4, 9]))
    kept = [1, 2, 3, 5, 6, 7, 8]
    assert read_labels(path).tolist() == kept
    images, labels = zip(*make_loader(path, batch_size=3, resolution=8, num_workers=1, train=False))
    pixels = np.concatenate([x.numpy() for x in images]).transpose(0, 2, 3, 1)
    pixels = pixels * np.array([0.229, 0.224, 0.225]) * 255 + np.array([0.485, 0.456, 0.406]) * 255
    assert np.concatenate([y.numpy().reshape(-1) for y in labels]).tolist() == kept  # a last batch of 1 is squeezed
    for image, label in zip(pixels, kept):  # raw (not JPEG) rows: the very pixels written
        assert np.abs(image - rows[label][0]).max() < 1


class _RaisesAtRow27:
    """40 tiny images, the source of a `.beton`; reading row 27 raises, as a bug in a source would."""

    def __len__(self) -> int:
        return 40

    def __getitem__(self, index: int):
        if index == 27:
            raise ZeroDivisionError("row 27 of a source with a bug")
        return np.full((8, 8, 3), index, np.uint8), index


def test_a_row_raising_in_a_writer_process_fails_the_conversion_with_its_traceback(tmp_path):
    # FFCV's own writer waits for ever for the rows of a worker process that died.
    import threading

    from datasets.storage.beton import ensure_beton
    from datasets.storage.writer import WriterProcessError

    path, outcome = tmp_path / "bug.beton", {}

    def convert():
        try:
            ensure_beton(path, _RaisesAtRow27, 40 * 512, max_resolution=8, num_workers=2)
        except Exception as error:
            outcome["error"] = error

    thread = threading.Thread(target=convert, daemon=True)
    thread.start()
    thread.join(60)
    assert not thread.is_alive(), "the conversion still waits for the process that raised"
    error = outcome.get("error")
    assert isinstance(error, WriterProcessError), error
    assert "ZeroDivisionError: row 27 of a source with a bug" in str(error) and "__getitem__" in str(error)
    assert [p.name for p in tmp_path.iterdir()] == ["bug.beton.lock"]  # no file, no half-written temporary


def test_a_training_state_is_written_whole_or_not_at_all(tmp_path, monkeypatch):
    import torch

    from datasets.storage.location import Location

    state = Location.of(str(tmp_path)) / "state.pt"
    state.save_torch({"epoch": 1, "weights": torch.arange(6.0)})
    loaded = state.load_torch()
    assert loaded["epoch"] == 1 and torch.equal(loaded["weights"], torch.arange(6.0)) and leftovers(tmp_path) == []

    def half_then_full(obj, path):  # the disk fills up while the state is being written
        Path(path).write_bytes(b"PK\x03\x04 half a zip")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", half_then_full)
    with pytest.raises(OSError) as err:
        state.save_torch({"epoch": 2, "weights": torch.zeros(6)})
    assert err.value.errno == errno.ENOSPC and leftovers(tmp_path) == []
    assert state.load_torch()["epoch"] == 1  # the last complete state is still there
