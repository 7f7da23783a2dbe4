"""The driver lock with real processes: what a re-run may kill, two drivers at once, another host,
and `--fresh` taking the lock before it moves anything."""
from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from conftest import ROOT
from engine.driver_lock import LOCK_NAME, DriverLockError, take_lock, this_host
from engine.runner import Plan, RunOptions, run_plan
from engine.spec import SweepSpec

HOLD = ("import sys; from pathlib import Path; from engine.driver_lock import take_lock; "
        "lock = take_lock(Path(sys.argv[1])); print('held', flush=True); sys.stdin.read(); lock.release()")


def sleeper() -> subprocess.Popen:
    """An unrelated live process (with a child of its own) that a lock file may name."""
    proc = subprocess.Popen(["/bin/sh", "-c", "sleep 300 & echo up; wait"], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "up"  # the child exists
    return proc


def started(pid: int) -> float:
    return psutil.Process(pid).create_time()


@pytest.fixture
def holder(tmp_path):
    """A live driver on this host holding the lock of `tmp_path/sweep`."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path / "sweep")], cwd=ROOT, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    yield proc
    proc.stdin.close()
    proc.wait(timeout=30)


def write_lock(directory: Path, info: dict) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / LOCK_NAME).write_text(json.dumps(info))


def test_stale_lock_naming_live_unrelated_processes_leaves_them_alive(tmp_path):
    unrelated = sleeper()
    try:
        child = psutil.Process(unrelated.pid).children()
        here = this_host()
        # A dead driver whose pid was reused by `unrelated` (another start time), and Ray pids that are
        # now `unrelated`'s: one with another start time, one recorded in another boot of this host.
        write_lock(tmp_path / "sweep", {**here, "pid": unrelated.pid, "started": started(unrelated.pid) - 3600,
                                        "ray": [{"pid": unrelated.pid, "started": started(unrelated.pid) - 1}]})
        lock = take_lock(tmp_path / "sweep")
        lock.release()
        write_lock(tmp_path / "sweep", {**here, "boot_id": "another-boot", "pid": 1, "started": 0,
                                        "ray": [{"pid": unrelated.pid, "started": started(unrelated.pid)}]})
        lock = take_lock(tmp_path / "sweep")
        assert unrelated.poll() is None and all(c.is_running() for c in child)
        info = json.loads((tmp_path / "sweep" / LOCK_NAME).read_text())
        assert info["pid"] == os.getpid() and info["host"] == here["host"]
        lock.release()
        assert not (tmp_path / "sweep" / LOCK_NAME).exists()
    finally:
        unrelated.kill()
        unrelated.wait()


def test_stale_lock_kills_the_ray_processes_it_provably_started(tmp_path):
    ours, other = sleeper(), sleeper()
    try:
        children = psutil.Process(ours.pid).children()
        assert children  # the shell's `sleep`
        write_lock(tmp_path / "sweep", {**this_host(), "pid": 1, "started": 0,
                                        "ray": [{"pid": ours.pid, "started": started(ours.pid)},
                                                {"pid": other.pid, "started": started(other.pid) + 5}]})
        take_lock(tmp_path / "sweep").release()
        ours.wait(timeout=10)  # ended (psutil reaped it: no exit status left); `sleep 300` would not end alone
        assert not any(c.is_running() for c in children)
        assert other.poll() is None
    finally:
        for proc in (ours, other):
            proc.kill()
            proc.wait()


def test_lock_of_another_host_is_never_taken_over(tmp_path):
    unrelated = sleeper()
    try:
        info = {"host": "some-other-node", "boot_id": this_host()["boot_id"], "pid": unrelated.pid,
                "started": started(unrelated.pid), "ray": [{"pid": unrelated.pid, "started": started(unrelated.pid)}]}
        write_lock(tmp_path / "sweep", info)
        with pytest.raises(DriverLockError, match="host some-other-node") as err:
            take_lock(tmp_path / "sweep")
        assert str(tmp_path / "sweep" / LOCK_NAME) in str(err.value) and "\n" not in str(err.value)
        assert json.loads((tmp_path / "sweep" / LOCK_NAME).read_text()) == info
        assert unrelated.poll() is None
    finally:
        unrelated.kill()
        unrelated.wait()


def test_a_live_driver_keeps_its_lock(tmp_path, holder):
    with pytest.raises(DriverLockError, match=f"pid {holder.pid} on {this_host()['host']}"):
        take_lock(tmp_path / "sweep")
    assert json.loads((tmp_path / "sweep" / LOCK_NAME).read_text())["pid"] == holder.pid


def _race(directory: str, barrier, results, release) -> None:
    barrier.wait()
    try:
        lock = take_lock(Path(directory))
    except DriverLockError:
        results.put("refused")
        return
    results.put("held")
    release.wait(60)
    lock.release()


def test_drivers_started_together_cannot_both_proceed(tmp_path):
    ctx = multiprocessing.get_context("fork")
    n = 4
    barrier, results, release = ctx.Barrier(n), ctx.Queue(), ctx.Event()
    procs = [ctx.Process(target=_race, args=(str(tmp_path / "sweep"), barrier, results, release)) for _ in range(n)]
    for p in procs:
        p.start()
    outcomes = sorted(results.get(timeout=60) for _ in range(n))
    release.set()
    for p in procs:
        p.join(30)
    assert outcomes == ["held"] + ["refused"] * (n - 1)
    assert not (tmp_path / "sweep" / LOCK_NAME).exists()


def test_fresh_takes_the_lock_before_moving_anything(tmp_path, holder):
    spec = SweepSpec(name="sweep", intervention="quantity", values=(10,), sources=("synthnet",), archs=("resnet18",))
    (tmp_path / "sweep" / "exp-000").mkdir()
    with pytest.raises(DriverLockError, match=f"pid {holder.pid}"):
        run_plan(spec, Plan([], {}, {}, {}), RunOptions(storage_path=str(tmp_path), fresh=True))
    assert (tmp_path / "sweep" / "exp-000").is_dir()
    assert not list(tmp_path.glob("sweep.old-*"))


def test_fresh_moves_the_sweep_and_keeps_holding_the_lock(tmp_path):
    spec = SweepSpec(name="sweep", intervention="quantity", values=(10,), sources=("synthnet",), archs=("resnet18",))
    (tmp_path / "sweep" / "exp-000").mkdir(parents=True)
    # an empty grid: every cell "finished", so run_plan returns right after --fresh without starting Ray
    run_plan(spec, Plan([], {}, {}, {}), RunOptions(storage_path=str(tmp_path), fresh=True))
    old = list(tmp_path.glob("sweep.old-*"))
    assert len(old) == 1 and (old[0] / "exp-000").is_dir() and not (old[0] / LOCK_NAME).exists()
    assert (tmp_path / "sweep").is_dir() and not (tmp_path / "sweep" / LOCK_NAME).exists()


def test_refusal_never_names_a_stale_record(tmp_path):
    """While the holder has not yet replaced a dead driver's record, a refused driver names no pid."""
    from filelock import FileLock

    from engine.driver_lock import guard_path

    unrelated = sleeper()
    try:
        write_lock(tmp_path / "sweep", {**this_host(), "pid": unrelated.pid, "started": started(unrelated.pid) - 60,
                                        "ray": []})
        with FileLock(str(guard_path(tmp_path / "sweep"))):  # a driver that holds the lock, its record not written
            with pytest.raises(DriverLockError) as err:
                take_lock(tmp_path / "sweep")
        assert "a driver that is starting" in str(err.value) and f"pid {unrelated.pid}" not in str(err.value)
    finally:
        unrelated.kill()
        unrelated.wait()
