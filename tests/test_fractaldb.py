"""Generated FractalDB: the paper's search rule, determinism by seed for any worker count, the grid command."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from datasets import get_source
from datasets.storage.beton import read_labels
from datasets.generators.fractaldb import WEIGHTS, filling_rate, render_instance, search_systems

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def systems() -> list[np.ndarray]:
    return search_systems(seed=0, num_classes=4, threshold=0.2, num_workers=1)


def test_classes_follow_the_search_rule(systems):
    for k, system in enumerate(systems):
        assert 2 <= len(system) <= 8 and system.shape[1] == 7
        assert np.all(np.abs(system[:, :6]) <= 1) and np.isclose(system[:, 6].sum(), 1)
        assert filling_rate(system, seed=k) >= 0.2  # the paper's threshold, on the search canvas
    assert len({s.tobytes() for s in systems}) == 4


def test_same_classes_with_any_worker_count(systems):
    parallel = search_systems(seed=0, num_classes=4, threshold=0.2, num_workers=2)
    assert all(np.array_equal(a, b) for a, b in zip(systems, parallel))
    assert not np.array_equal(search_systems(seed=1, num_classes=1, threshold=0.2)[0], systems[0])


def test_instances_are_deterministic_flipped_and_weighted(systems):
    a = render_instance(systems[0], 0, 32, seed=0)
    assert a.dtype == np.uint8 and a.shape == (32, 32, 3) and a.max() > 0
    assert np.array_equal(a, render_instance(systems[0], 0, 32, seed=0))
    assert len(WEIGHTS) == 25 and np.array_equal(WEIGHTS[0], np.ones(6))
    # instances 0 and 100 share weight and flip (i // 4 % 25, i % 4) and differ only by their patches
    same_shape = render_instance(systems[0], 100, 32, seed=0)
    other_class = render_instance(systems[1], 0, 32, seed=0)
    assert np.abs(a.astype(int) - same_shape).mean() < np.abs(a.astype(int) - other_class).mean()


def test_source_plan_and_beton(tmp_path):
    src = get_source("fractaldb", num_classes=3, images_per_class=4, val_per_class=2, resolution=24)
    assert src.splits == ("train", "val") and src.num_classes == 3
    assert np.bincount(src.labels("train")).tolist() == [4, 4, 4]
    plan = src.plan("val")
    assert set(plan["instance"]) == {4, 5}  # val instances are other instances of the same classes
    images = src.render("val", 24)
    assert images.shape == (6, 24, 24, 3) and not np.array_equal(images[0], src.render("train", 24, [0])[0])
    path = src.beton("train", 24, num_workers=2)
    assert np.array_equal(read_labels(path), src.labels("train"))


def test_grid_command_writes_a_png(tmp_path):
    from PIL import Image

    out = tmp_path / "grid.png"
    proc = subprocess.run([sys.executable, "-m", "datasets", "fractaldb-grid", "--out", str(out), "--num-classes", "2",
                           "--per-class", "3", "--resolution", "32"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env={**os.environ})
    assert proc.returncode == 0, proc.stderr
    assert "searching 2 FractalDB classes" in proc.stderr
    assert np.asarray(Image.open(out)).shape == (64, 96, 3)
