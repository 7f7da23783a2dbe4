"""What a hung subprocess and its descendants (a sweep driver, its raylet, its Ray trials) were doing.

A test that runs a sweep script with a time limit calls `stacks_of_tree` when the limit passes, so
the failure says where every Python process stood (Python and native frames, by py-spy) instead of
only that the time ran out; then `kill_tree` ends them all, so no trial outlives its test.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import psutil

PER_PROCESS_CHARS = 6000   # a trial's native stacks run long; the failure message keeps the head of each


def _tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _worth_a_dump(process: psutil.Process, root: int) -> bool:
    """The root (a sweep driver) and the Ray workers running a task; not Ray's own daemons or idle workers."""
    if process.pid == root:
        return True
    try:
        name = process.name()
    except psutil.NoSuchProcess:
        return False
    return name.startswith("ray::") and name != "ray::IDLE"


def _py_spy() -> str | None:
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


def stacks_of_tree(pid: int) -> str:
    """py-spy's dump (with native frames) of `pid` and of each Ray worker under it that runs a task."""
    py_spy = _py_spy()
    if py_spy is None:
        return "(no stacks: py-spy is not installed; `pip install -e .[test]` installs it)"
    parts = []
    for process in _tree(pid):
        if not _worth_a_dump(process, pid):
            continue
        try:
            title = " ".join(process.cmdline())[:200]
        except psutil.NoSuchProcess:
            continue
        try:
            dump = subprocess.run([py_spy, "dump", "--native", "--pid", str(process.pid)],
                                  capture_output=True, text=True, timeout=60)
            text = (dump.stdout + dump.stderr).strip()
        except subprocess.TimeoutExpired:
            text = "(py-spy gave no dump within 60 s)"
        if len(text) > PER_PROCESS_CHARS:
            text = text[:PER_PROCESS_CHARS] + f"\n[... {len(text) - PER_PROCESS_CHARS} more characters]"
        parts.append(f"--- pid {process.pid}: {title}\n{text}")
    return "\n".join(parts) or f"(pid {pid} has ended)"


def kill_tree(pid: int) -> None:
    """SIGKILL `pid` and every descendant it has; wait until the descendants are gone (`pid` itself is
    left for its parent to reap)."""
    processes = list(reversed(_tree(pid)))
    for process in processes:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs([p for p in processes if p.pid != pid], timeout=30)
    if alive:
        raise RuntimeError(f"SIGKILL did not end {[p.pid for p in alive]} within 30 s")
