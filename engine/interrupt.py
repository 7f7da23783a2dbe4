"""Ctrl-C during a sweep: Tune stops the trials (each keeps its last epoch checkpoint) and the
sweep ends with one line saying how to resume, instead of Tune's `Tuner.restore(...)` advice.

Tune installs its own SIGINT handler for a run: the first Ctrl-C ends its loop, snapshots the
experiment (unfinished trials stay unfinished, so the next run resumes them) and stops the trial
actors; a second Ctrl-C skips that. `InterruptWatch` wraps that handler to learn that the run was
interrupted (Tune returns normally in that case) and to say what is happening; `quiet_tune_logs`
drops Tune's log lines that would contradict ours.
"""
from __future__ import annotations

import contextlib
import logging
import signal
import sys
import threading
from typing import Iterator

from ray.tune import Callback

__all__ = ["InterruptWatch", "SweepInterrupted", "keep_sigint_handler", "quiet_tune_logs"]

# Tune's log lines about an interrupted or unfinished run: advice for Tune's API (`Tuner.restore`),
# not for a sweep script; the sweep prints its own resume command.
TUNE_LINES = ("Stop signal received", "Experiment has been interrupted", "Training has been interrupted",
              "Trials did not complete", "Wrote the latest version of all result files",
              # Tune's results object reading a trial that never reported (one not started before Ctrl-C)
              "Failed to fetch metrics")
TUNE_LOGGERS = ("ray.tune.tune", "ray.tune.analysis.experiment_analysis")


class SweepInterrupted(Exception):
    """The user stopped the sweep (Ctrl-C); unfinished cells keep their last epoch checkpoint."""


class InterruptWatch(Callback):
    """Tune callback that notices the first Ctrl-C of a run, without changing what Tune does."""

    def __init__(self):
        self.interrupted = False

    def __getstate__(self) -> dict:
        return {"interrupted": False}  # Tune pickles its run configuration; a new run starts clean

    def setup(self, **info) -> None:
        # Tune has just installed its SIGINT handler (tune.run does so before setting up callbacks).
        if threading.current_thread() is not threading.main_thread():
            return
        tune_handler = signal.getsignal(signal.SIGINT)
        if not callable(tune_handler):
            return

        def on_sigint(signum, frame):
            self.interrupted = True
            print("\nCtrl-C: stopping the cells; each keeps its last finished epoch (Ctrl-C again to stop at once)",
                  file=sys.stderr, flush=True)
            tune_handler(signum, frame)  # Tune ends its loop, snapshots, and restores the previous handler

        signal.signal(signal.SIGINT, on_sigint)


@contextlib.contextmanager
def keep_sigint_handler() -> Iterator[None]:
    """Restore the SIGINT handler after a Tune run: Tune leaves its own installed when a run ends
    normally, and it would swallow the next Ctrl-C (e.g. while the report is written)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.getsignal(signal.SIGINT)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)


class _DropTuneLines(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(TUNE_LINES)


@contextlib.contextmanager
def quiet_tune_logs() -> Iterator[None]:
    """Drop Tune's own interrupted/unfinished-run messages (`TUNE_LINES`) while a sweep runs."""
    drop = _DropTuneLines()
    for name in TUNE_LOGGERS:
        logging.getLogger(name).addFilter(drop)
    try:
        yield
    finally:
        for name in TUNE_LOGGERS:
            logging.getLogger(name).removeFilter(drop)
