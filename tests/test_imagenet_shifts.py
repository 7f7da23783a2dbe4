"""ImageNet-V2 and ImageNet-Sketch read from small folders written here in their real layouts."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from datasets import SourceError, get_source
from layouts import write_jpeg

WNIDS = [line.strip() for line in (Path(__file__).resolve().parent.parent / "datasets" / "data" /
                                   "imagenet_wnids.txt").read_text().splitlines() if line.strip()]


def write_v2(root: Path, classes=(0, 1, 2, 10, 999), per_class: int = 2) -> Path:
    base = root / "imagenetv2-matched-frequency-format-val"
    for k in classes:
        for i in range(per_class):
            write_jpeg(base / str(k) / f"{k:04d}{i}.jpeg", k % 7, seed=i)
    return base


def test_v2_class_folders_map_by_integer_to_the_sorted_wnids(tmp_path):
    write_v2(tmp_path)
    src = get_source("imagenet_v2", tmp_path)
    assert src.splits == ("test",) and src.classes == WNIDS and src.num_classes == 1000
    labels = src.labels("test")
    files = src.scans["test"].files
    by_folder = {f.split("/")[0]: int(label) for f, label in zip(files, labels)}
    # folder "10" is wnid number 10, although it sorts between "1" and "2" as a string
    assert by_folder == {"0": 0, "1": 1, "2": 2, "10": 10, "999": 999}
    assert src.classes[by_folder["10"]] == WNIDS[10] == "n01530575"
    assert np.bincount(labels, minlength=1000)[[0, 1, 2, 10, 999]].tolist() == [2] * 5
    images, written = src.images("test", 32), []
    for i in range(len(images)):
        image, label = images[i]
        written.append(label)
        assert image.ndim == 3 and image.shape[2] == 3
    assert written == labels.tolist()


def test_sketch_reads_wnid_folders_in_either_standard_place(tmp_path):
    for i, w in enumerate((WNIDS[0], WNIDS[5], WNIDS[998])):
        write_jpeg(tmp_path / "imagenet-sketch" / "sketch" / w / f"sketch_{i}.JPEG", i)
    src = get_source("imagenet_sketch", tmp_path)
    assert sorted(src.labels("test").tolist()) == [0, 5, 998]
    direct = get_source("imagenet_sketch", tmp_path / "imagenet-sketch")
    assert direct.labels("test").tolist() == src.labels("test").tolist()


@pytest.mark.parametrize("source, words", [
    ("imagenet_v2", "ImageNet-V2 (matched-frequency) not found"),
    ("imagenet_sketch", "ImageNet-Sketch not found"),
])
def test_missing_natural_shift_says_what_to_download_and_where(tmp_path, source, words):
    with pytest.raises(SourceError) as error:
        get_source(source, tmp_path)
    message = str(error.value)
    assert "\n" not in message and words in message and "download" in message and str(tmp_path) in message


def test_v2_folder_that_is_not_a_class_index_is_named(tmp_path):
    base = write_v2(tmp_path, classes=(0, 1))
    write_jpeg(base / "1000" / "x.jpeg", 0)
    with pytest.raises(SourceError, match="class folders are named 0..999; remove '1000'"):
        get_source("imagenet_v2", tmp_path).labels("test")


def test_imagenet_reference_pools_v2_and_sketch_as_natural_shifted_sets(tmp_path):
    from datasets.storage.beton import read_labels
    from layouts import write_imagenet

    write_imagenet(tmp_path, wnids=tuple(WNIDS[:3]))               # ImageNet with 3 of its classes
    write_v2(tmp_path, classes=(0, 1, 2, 10), per_class=2)         # class 10 is not among them: left out
    for k in (0, 2):
        write_jpeg(tmp_path / "imagenet-sketch" / "sketch" / WNIDS[k] / f"s{k}.JPEG", k)
    src = get_source("support_shift", tmp_path, base="imagenet", p=None, shifts=["flip"],
                     natural=["imagenet_v2", "imagenet_sketch"])
    domains = src.domains("test")
    n_val = len(src.base.labels("val"))
    assert domains.tolist() == ["flip"] * n_val + ["imagenet_v2"] * 6 + ["imagenet_sketch"] * 2
    labels = src.labels("test")
    assert labels[domains == "imagenet_v2"].tolist() == [0, 0, 1, 1, 2, 2]
    assert labels[domains == "imagenet_sketch"].tolist() == [0, 2]
    assert read_labels(src.beton("test", 32)).tolist() == labels.tolist()  # the written file, row for row
    assert set(src.evaluation_sets()) == {"id", "ood", "ood_flip", "ood_imagenet_v2", "ood_imagenet_sketch"}


def test_natural_set_that_is_missing_fails_in_one_line(tmp_path):
    from layouts import write_imagenet

    write_imagenet(tmp_path, wnids=tuple(WNIDS[:3]))
    with pytest.raises(SourceError) as error:
        get_source("support_shift", tmp_path, base="imagenet", natural=["imagenet_v2"])
    assert "ImageNet-V2 (matched-frequency) not found" in str(error.value) and "\n" not in str(error.value)


def test_support_shift_sweep_without_v2_stops_in_one_line_before_ray(tmp_path):
    from conftest import run_sweep_script
    from layouts import write_imagenet

    write_imagenet(tmp_path / "data", wnids=tuple(WNIDS[:3]))
    out = run_sweep_script("support_shift.py", "--data-root", str(tmp_path / "data"), "--storage-path",
                           str(tmp_path / "runs"), timeout=300)
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1, out.stderr
    assert "ImageNet-V2 (matched-frequency) not found" in lines[0] and "download" in lines[0]
    assert "Ray" not in out.stdout and not (tmp_path / "runs").exists()
