"""Bad inputs get a one-line error before any Ray process starts."""
from __future__ import annotations

import pytest

from conftest import run_sweep_script
from engine.cli import EMBEDDED_RECIPE
from engine.runner import RunOptions, SweepError, run_sweep
from engine.spec import SweepSpec


@pytest.mark.parametrize("args, message", [
    (["--archs", "resnet9000"], "unknown architecture 'resnet9000'"),
    (["--archs", "alexnet"], "alexnet needs inputs of at least 64 px"),
    (["--data-root", "/nonexistent/data"], "--data-root /nonexistent/data: no such directory"),
])
def test_sweep_script_bad_input(tmp_path, args, message):
    out = run_sweep_script("data_quantity.py", "--storage-path", str(tmp_path), *args, timeout=120)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], out.stderr
    assert "Ray" not in out.stdout and not list(tmp_path.iterdir())  # nothing started, nothing written


def test_missing_real_dataset_says_what_to_download(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    out = run_sweep_script("data_quantity.py", "--storage-path", str(tmp_path / "sweeps"), "--data-root", str(data),
                           timeout=120)
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1, out.stderr
    assert "iWildCam-WILDS v2.0 not found" in lines[0] and "download" in lines[0] and str(data) in lines[0]
    assert not (tmp_path / "sweeps").exists()  # nothing started, nothing written


def test_impossible_size_fails_before_ray(tmp_path):
    spec = SweepSpec(name="too_big", intervention="quantity", values=(10**6,), sources=("synthnet",),
                     archs=("resnet18",), recipe=EMBEDDED_RECIPE)
    with pytest.raises(ValueError, match="class-balanced images need") as err:
        run_sweep(spec, RunOptions(storage_path=str(tmp_path)))
    assert "\n" not in str(err.value)
    import ray

    assert not ray.is_initialized() and not list(tmp_path.iterdir())


def test_unsupported_storage_is_refused_clearly(tmp_path):
    spec = SweepSpec(name="gs", intervention="quantity", values=(100,), sources=("synthnet",),
                     archs=("resnet18",), recipe=EMBEDDED_RECIPE)
    with pytest.raises(SweepError, match=r"'gs://' are not supported.*s3://bucket/prefix") as err:
        run_sweep(spec, RunOptions(storage_path="gs://bucket/sweeps"))
    assert "\n" not in str(err.value)
    with pytest.raises(SweepError, match="name a bucket"):
        run_sweep(spec, RunOptions(storage_path="s3://"))


def test_dry_run_prints_cells_and_starts_nothing(tmp_path):
    out = run_sweep_script("data_quantity.py", "--storage-path", str(tmp_path), "--dry-run", timeout=120)
    assert out.returncode == 0, out.stderr
    # 2 seeds x 2 architectures x (scratch, full, 3 quantities)
    assert "20 cells in 'data_quantity'" in out.stdout and "core-hours" in out.stdout
    assert not list(tmp_path.iterdir())
