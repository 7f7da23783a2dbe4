"""Every benchmark runs on tiny inputs (`--quick`) and ends with its headline line.

These check that the scripts work, never how fast anything is: no timing is asserted. They share
one session's data cache and one folder of generated JPEGs.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import pytest

from conftest import ROOT

BENCHMARKS = ROOT / "benchmarks"
HEADLINE = re.compile(r"^(?P<name>\w+): (?P<value>-?(\d+\.\d+|inf)) \(goal (>=|<=) \d+(\.\d+)?\)$")
SCRIPTS = sorted(p.stem for p in BENCHMARKS.glob("*.py") if p.stem != "common")


def _checked(name: str, returncode: int, stdout: str, stderr: str) -> str:
    """`stdout` of a finished benchmark, once it exited cleanly with its headline last."""
    assert returncode == 0, stdout[-3000:] + stderr[-3000:]
    last = stdout.strip().splitlines()[-1]
    match = HEADLINE.match(last)
    assert match and match["name"] == name, last
    return stdout


@pytest.fixture(scope="session")
def bench_env(isolated_cache) -> dict:
    return {**os.environ, "SWEEPS_CACHE": str(isolated_cache), "PYTHONPATH": str(ROOT)}


@pytest.fixture(scope="session")
def bench(bench_env, tmp_path_factory):
    """Run `benchmarks/<name>.py --quick [args]` in a fresh interpreter; returns its stdout."""
    work = tmp_path_factory.mktemp("bench-work")

    def run(name: str, *args: str, shared_workdir: bool = False) -> str:
        extra = ("--workdir", str(work)) if shared_workdir else ()
        out = subprocess.run([sys.executable, str(BENCHMARKS / f"{name}.py"), "--quick", *extra, *args], cwd=ROOT,
                             env=bench_env, capture_output=True, text=True, timeout=600)
        return _checked(name, out.returncode, out.stdout, out.stderr)

    return run


RAY_BENCHMARKS = ("tune_overhead", "sweep_scaling")


@pytest.fixture(scope="module")
def ray_benchmarks(bench_env, tmp_path_factory):
    """Both Ray benchmarks started at once (`--quick`), each with its own private Ray: most of their
    time is single-threaded (actor start, imports, numba compiling FFCV's 1-CPU pipelines), so
    together they take little more than the longer one (measured: 107 s for both after the other
    benchmarks, the whole file 161 s; started before the other benchmarks instead, the file took
    172 s). `finish(name)` waits for one; returns its stdout."""
    logs = tmp_path_factory.mktemp("ray-bench")
    procs = {}
    for name in RAY_BENCHMARKS:
        out, err = open(logs / f"{name}.out", "w+"), open(logs / f"{name}.err", "w+")
        procs[name] = (subprocess.Popen([sys.executable, str(BENCHMARKS / f"{name}.py"), "--quick"], cwd=ROOT,
                                        env=bench_env, stdout=out, stderr=err, text=True,
                                        start_new_session=True), out, err)  # its own group: Ray's processes too

    def stop(proc: subprocess.Popen) -> None:
        os.killpg(proc.pid, signal.SIGKILL)  # the benchmark and the Ray processes it started
        proc.wait()

    def finish(name: str) -> str:
        proc, out, err = procs[name]
        try:
            proc.wait(timeout=600)
        except subprocess.TimeoutExpired:
            stop(proc)
        out.seek(0)
        err.seek(0)
        return _checked(name, proc.returncode, out.read(), err.read())

    yield finish
    for proc, out, err in procs.values():
        if proc.poll() is None:  # a test that did not wait for it (it failed first)
            stop(proc)
        out.close()
        err.close()


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
def test_tune_overhead_runs(ray_benchmarks):
    out = ray_benchmarks("tune_overhead")
    assert "fixed per sweep" in out and "fixed per cell" in out


@pytest.mark.slow
def test_sweep_scaling_runs(ray_benchmarks):
    out = ray_benchmarks("sweep_scaling")
    assert "1 trial at a time" in out and "2 nodes x 1 CPU" in out and "multi-node overhead" in out
