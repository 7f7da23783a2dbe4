"""One driver per sweep, and the Ray processes a dead driver left.

Two files guard a sweep directory `<storage>/<sweep>/`:
- `<storage>/.<sweep>.driver.lock`, a real file lock (`flock`, through `filelock`) that the driver
  holds for as long as it runs. It lies beside the sweep directory, not in it, so `--fresh` can move
  the directory aside while holding it. The kernel drops it when the driver dies, however it dies;
  two drivers started together cannot both get it.
- `<sweep>/.driver.json`, what the holder is: host, boot id, pid and process start time, and the
  same identity for every local Ray process it started. It explains a refusal and lets the next
  driver clean up after a killed one.

A driver that gets the file lock but finds a `.driver.json` of another host refuses to run: that
driver may be alive on a filesystem whose locks do not reach this machine, so it is never taken
over (the message says which file to delete once it is known to be gone). A `.driver.json` of this
host whose driver is dead is taken over, and of the Ray processes it lists, only those whose pid
*and* start time still match, on this host and boot, are stopped (with their children): a pid
reused by an unrelated process, or recorded on another machine, is never touched.

Storage: on a local or POSIX shared filesystem the lock needs file locks that work across its
clients (NFSv4, EFS, Lustre). On `s3://` storage the same object name, `<storage>/.<sweep>.driver.lock`,
is a lease (`engine.object_lock.LeaseLock`, conditional writes) that holds the record itself; the
driver renews it every 30 s. A lease another host holds is refused while it is renewed, and taken
over once it has not been for `LEASE_S` (2 minutes, on the store's clock): that driver is gone, or
cut off long enough that it stops itself when it next fails to renew. A record of this host whose
driver is dead is taken over at once, as on a filesystem.
"""
from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

from filelock import FileLock, Timeout

from datasets.storage.atomic import atomic_write
from datasets.storage.location import Location

__all__ = ["DriverLock", "DriverLockError", "LOCK_NAME", "LeasedDriverLock", "record_ray_pids", "take_lock", "this_host"]

LOCK_NAME = ".driver.json"
START_TIME_TOLERANCE_S = 0.05   # psutil's create_time has a resolution of one clock tick (10 ms)


class DriverLockError(ValueError):
    """Another driver runs (or may run) this sweep; one line naming it and the lock file."""


def this_host() -> dict:
    """This machine: its name and the id of its current boot (pids and start times restart with it)."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        import psutil

        boot = str(psutil.boot_time())
    return {"host": socket.gethostname(), "boot_id": boot}


def process_id(pid: int) -> dict:
    """pid and start time of a live process (psutil's create_time, seconds since the epoch)."""
    import psutil

    return {"pid": pid, "started": psutil.Process(pid).create_time()}


def same_process(entry: dict) -> bool:
    """Is `entry` (pid, started) a live process of this machine that started at that time?"""
    import psutil

    try:
        started = psutil.Process(int(entry["pid"])).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied, KeyError, TypeError, ValueError):
        return False
    return abs(started - float(entry.get("started") or 0)) < START_TIME_TOLERANCE_S


def guard_path(directory: Path) -> Path:
    return directory.parent / f".{directory.name}.driver.lock"


@dataclass
class DriverLock:
    """A held driver lock: `release()` it when the driver ends (the kernel drops it if the driver dies)."""

    directory: Path
    guard: FileLock
    info: dict = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return self.directory / LOCK_NAME

    def write(self) -> None:
        atomic_write(self.path, json.dumps(self.info, indent=1))

    def moved_aside(self, old: Path) -> None:
        """`--fresh` renamed the sweep directory to `old` and made a new one: describe this driver there."""
        self.write()
        (old / LOCK_NAME).unlink(missing_ok=True)

    def release(self) -> None:
        self.path.unlink(missing_ok=True)
        self.guard.release()


def _read(path: Path) -> dict | None:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    try:
        info = json.loads(text)
        if not isinstance(info, dict):
            raise ValueError("not an object")
        return info
    except ValueError as error:
        raise DriverLockError(f"{path}: unreadable driver lock ({error}); if no driver runs this sweep, delete it "
                              "and re-run") from None


def take_lock(directory: Path | Location) -> DriverLock | LeasedDriverLock:
    """Hold the sweep's driver lock, or raise `DriverLockError` naming the driver that has it.

    A lock left on this host by a dead driver is taken over after stopping the Ray processes that
    driver started (only those whose pid and start time match its record).
    """
    if isinstance(directory, Location):
        if directory.remote:
            return _take_lease(directory)
        directory = directory.path
    directory.parent.mkdir(parents=True, exist_ok=True)
    guard = FileLock(str(guard_path(directory)), timeout=0)
    path = directory / LOCK_NAME
    try:
        guard.acquire()
    except Timeout:
        info = _read(path) if path.exists() else None
        if info and info.get("host") == this_host()["host"] and not same_process(info):
            info = None  # the holder has not replaced a dead driver's record yet: never name that pid
        who = f"pid {info.get('pid')} on {info.get('host')}" if info else "a driver that is starting"
        raise DriverLockError(f"{directory}: another driver ({who}) is running this sweep ({guard_path(directory)} "
                              "is locked); wait for it or stop it, then re-run") from None
    try:
        old = _read(path)
        if old is not None:
            _take_over(old, path)
        directory.mkdir(parents=True, exist_ok=True)
        lock = DriverLock(directory, guard, {**this_host(), **process_id(os.getpid()), "ray": []})
        lock.write()
        return lock
    except BaseException:
        guard.release()
        raise


def _take_over(old: dict, path: Path) -> None:
    """Check that the driver that wrote `old` is gone, and stop the Ray processes it provably started."""
    here = this_host()
    if old.get("host") != here["host"]:
        raise DriverLockError(f"{path}: written by a driver on host {old.get('host') or '(unknown)'} (pid "
                              f"{old.get('pid')}), which may still be running; it is never taken over from another "
                              "host: stop it there, or delete this file once it is known to be gone, then re-run")
    if old.get("boot_id") == here["boot_id"] and same_process(old):
        raise DriverLockError(f"{path}: another driver (pid {old['pid']}) is running this sweep; wait for it or "
                              "stop it, then re-run")
    if old.get("boot_id") == here["boot_id"]:
        stop_processes(old.get("ray", []))


def stop_processes(entries: list[dict]) -> list[int]:
    """Kill the processes of `entries` whose pid and start time still match, and their children;
    returns the pids killed. Anything else (a reused pid, a process that is gone) is left alone."""
    import psutil

    procs = []
    for entry in entries:
        if not same_process(entry):
            continue
        try:
            proc = psutil.Process(int(entry["pid"]))
            procs += [proc] + proc.children(recursive=True)  # the parent first: it cannot start new ones
        except psutil.NoSuchProcess:
            continue
    for proc in procs:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(procs, timeout=10)
    return [p.pid for p in procs]


def record_ray_pids(lock: DriverLock) -> None:
    """Record the local Ray processes this driver started (pid and start time), for a re-run after a SIGKILL."""
    import psutil
    import ray._private.worker as ray_worker

    node = getattr(ray_worker, "_global_node", None)
    if node is None:  # connected to an existing cluster (--address): its processes are not ours
        return
    entries = []
    for infos in node.all_processes.values():
        for info in infos:
            if info.process is None:
                continue
            try:
                entries.append(process_id(info.process.pid))
            except psutil.NoSuchProcess:
                continue
    lock.info["ray"] = entries
    lock.write()


@dataclass
class LeasedDriverLock:
    """The driver lock of a sweep on object storage: a lease object that also holds the record."""

    directory: Location
    lease: object   # engine.object_lock.LeaseLock

    @property
    def info(self) -> dict:
        return self.lease.info

    def write(self) -> None:
        self.lease.write(self.lease.info)

    def moved_aside(self, old: Location) -> None:
        """`--fresh` moved the sweep to `old`: the lock lies beside the sweep, so nothing moves with it."""

    def release(self) -> None:
        self.lease.release()


def _lost(message: str) -> None:
    """A driver that lost its lease stops: like Ctrl-C, the trials stop at their last checkpoint."""
    import _thread

    print(f"error: {message}; stopping this driver (its trials keep their last checkpoint)", flush=True)
    _thread.interrupt_main()


def _take_lease(directory: Location) -> LeasedDriverLock:
    from engine.object_lock import LEASE_S, LeaseLock, LockHeld

    where = directory.parent / f".{directory.name}.driver.lock"
    lease_s = float(os.environ.get("SWEEPS_LEASE_S", LEASE_S))
    lease = LeaseLock(where, {**this_host(), **process_id(os.getpid()), "ray": []}, lease_s, on_lost=_lost)
    try:
        previous = lease.try_acquire()
    except LockHeld as held:
        old, here = held.holder, this_host()
        if old.get("host") != here["host"] or old.get("boot_id") != here["boot_id"] or same_process(old):
            where_ = "this host" if old.get("host") == here["host"] else f"host {old.get('host') or '(unknown)'}"
            raise DriverLockError(
                f"{directory}: another driver (pid {old.get('pid')} on {where_}) is running this sweep ({where} was "
                f"renewed {held.age_s:.0f} s ago); wait for it or stop it, then re-run (a lease not renewed for "
                f"{lease_s:.0f} s is taken over)") from None
        if not lease.take_over(held.etag):
            raise DriverLockError(f"{directory}: another driver took {where} at the same time; re-run") from None
        previous = old
    if previous is not None:
        if previous.get("host") == this_host()["host"] and previous.get("boot_id") == this_host()["boot_id"]:
            stop_processes(previous.get("ray", []))
        else:
            print(f"took over {where}: its driver (pid {previous.get('pid')} on {previous.get('host')}) had not "
                  f"renewed it for {lease_s:.0f} s")
    return LeasedDriverLock(directory, lease)
