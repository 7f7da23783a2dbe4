"""One driver per sweep: the lock file `<sweep>/.driver.json`, and the Ray processes a dead driver left.

A second driver on the same sweep would restore the same Tune experiments and write into the
same trial directories: it is refused. A lock left by a driver that was killed (SIGKILL, a lost
terminal) is taken over, after stopping the local Ray processes that driver started, which would
otherwise keep training and writing into the sweep.
"""
from __future__ import annotations

import json
from pathlib import Path

__all__ = ["DriverLockError", "record_ray_pids", "take_lock"]


class DriverLockError(ValueError):
    """Another live driver runs this sweep; one line naming its pid."""


def take_lock(directory: Path) -> Path:
    """Refuse to run two drivers on one sweep; a lock left by a dead driver is taken over."""
    import psutil

    lock = directory / ".driver.json"
    try:
        info = json.loads(lock.read_text())
    except (OSError, json.JSONDecodeError):
        info = None
    if info and _alive(info.get("pid"), info.get("started")):
        raise DriverLockError(f"{directory}: another driver (pid {info['pid']}) is running this sweep; "
                         "wait for it or stop it, then re-run")
    if info:
        _kill_stale_ray(info.get("ray_pids", []))
    me = psutil.Process()
    lock.write_text(json.dumps({"pid": me.pid, "started": me.create_time(), "ray_pids": []}))
    return lock


def _alive(pid, started) -> bool:
    """Is `pid` the same live process that wrote the lock (not a recycled pid)?"""
    import psutil

    try:
        return pid is not None and abs(psutil.Process(pid).create_time() - (started or 0)) < 1
    except psutil.NoSuchProcess:
        return False


def _kill_stale_ray(pids: list[int]) -> None:
    """Stop the Ray processes a killed driver started: they would keep writing into the sweep."""
    import psutil

    procs = []
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            procs += proc.children(recursive=True) + [proc]
        except psutil.NoSuchProcess:
            continue
    for proc in procs:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(procs, timeout=10)


def record_ray_pids(lock: Path) -> None:
    """Remember the local Ray processes this driver started, for a re-run after a SIGKILL."""
    import ray._private.worker as ray_worker

    node = getattr(ray_worker, "_global_node", None)
    if node is None:  # connected to an existing cluster (--address): its processes are not ours
        return
    pids = [info.process.pid for infos in node.all_processes.values() for info in infos if info.process]
    lock.write_text(json.dumps({**json.loads(lock.read_text()), "ray_pids": pids}))
