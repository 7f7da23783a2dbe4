"""Every benchmark runs on tiny inputs (`--quick`) and ends with its headline line.

These check that the scripts work, never how fast anything is: no timing is asserted. They share
one session's data cache and one folder of generated JPEGs.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from conftest import ROOT

BENCHMARKS = ROOT / "benchmarks"
HEADLINE = re.compile(r"^(?P<name>\w+): (?P<value>-?(\d+\.\d+|inf)) \(goal (>=|<=) \d+(\.\d+)?\)$")
SCRIPTS = sorted(p.stem for p in BENCHMARKS.glob("*.py") if p.stem != "common")


@pytest.fixture(scope="session")
def bench(isolated_cache, tmp_path_factory):
    """Run `benchmarks/<name>.py --quick [args]` in a fresh interpreter; returns its stdout."""
    work = tmp_path_factory.mktemp("bench-work")
    env = {**os.environ, "SWEEPS_CACHE": str(isolated_cache), "PYTHONPATH": str(ROOT)}

    def run(name: str, *args: str, shared_workdir: bool = False) -> str:
        extra = ("--workdir", str(work)) if shared_workdir else ()
        out = subprocess.run([sys.executable, str(BENCHMARKS / f"{name}.py"), "--quick", *extra, *args], cwd=ROOT,
                             env=env, capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
        last = out.stdout.strip().splitlines()[-1]
        match = HEADLINE.match(last)
        assert match and match["name"] == name, last
        return out.stdout

    return run


def test_every_benchmark_is_in_make_bench_and_the_readme():
    makefile = (ROOT / "Makefile").read_text()
    readme = (BENCHMARKS / "README.md").read_text()
    for name in SCRIPTS:
        assert f"benchmarks/{name}.py" in makefile, name
        assert f"`{name}.py`" in readme, name


@pytest.mark.parametrize("name", ["loader_vs_torch", "beton_write"])
def test_jpeg_benchmarks_run(bench, name):
    out = bench(name, shared_workdir=True)  # both read the same generated JPEG files
    assert "ratio" in out


def test_pipeline_efficiency_runs(bench):
    out = bench("pipeline_efficiency", "--archs", "mobilenet_v3_small")
    assert "mobilenet_v3_small cpu fp32: loader" in out


def test_gpu_loop_runs_without_ray_or_ffcv(bench):
    out = bench("gpu_loop")
    assert "imported ray or ffcv: neither" in out
    assert "loop efficiency" in out


def test_analysis_scale_runs(bench):
    bench("analysis_scale")


@pytest.mark.slow
def test_tune_overhead_runs(bench):
    out = bench("tune_overhead")
    assert "fixed per sweep" in out and "fixed per cell" in out


@pytest.mark.slow
def test_sweep_scaling_runs(bench):
    out = bench("sweep_scaling")
    assert "2 nodes x 1 CPU" in out and "multi-node overhead" in out
