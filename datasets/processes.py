"""Worker processes for the conversions and checks that fan out over the cores (`fork_pool`).

A process that ran `ray.init` keeps Ray's Python-level SIGTERM handler after `ray.shutdown` (a
sweep driver, a test session), and forked workers inherit it. `Pool.terminate()` stops its
workers with SIGTERM: a Python handler runs only when the worker next executes Python, so a
signal landing just before a worker blocks on the pool's task queue is never acted on, the worker
waits for ever and so does the `with` block that ends the pool. Each worker here first restores
SIGTERM's default action: the signal ends it at once, whatever it is doing.
"""
from __future__ import annotations

import signal
from multiprocessing import get_context
from multiprocessing.pool import Pool


def _default_sigterm() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def fork_pool(processes: int) -> Pool:
    """A forked `multiprocessing.Pool` of `processes` workers that SIGTERM always stops."""
    return get_context("fork").Pool(processes, initializer=_default_sigterm)
