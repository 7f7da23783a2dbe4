"""What a sweep prints while Tune runs: one row per cell, refreshed at a steady rate.

Tune's own table shows its columns (iterations, the first metrics it sees, such as
`pretrain_loss`) and a configuration box per trial. A researcher watching a sweep wants, per
cell: its name, the phase it is in and that phase's epoch, its latest ID and OOD macro-F1, its
throughput and its status. `CellTable` is a Tune `ProgressReporter` (Tune's legacy output engine,
`RAY_AIR_NEW_OUTPUT=0`, the one that honours a custom reporter) that prints exactly that.
"""
from __future__ import annotations

import math
import sys
import time

from ray.tune import ProgressReporter

from engine.spec import describe_cell

__all__ = ["COLUMNS", "CellTable", "cell_row", "duration", "render_table"]

COLUMNS = ("cell", "phase", "epoch", "ID F1 %", "OOD F1 %", "images/s", "status")
STATUS = {"PENDING": "pending", "RUNNING": "running", "PAUSED": "paused", "TERMINATED": "finished",
          "ERROR": "errored"}
# Seconds between two tables: often enough to watch a terminal, rarely enough for a log file
# (a Ray job's driver log) to stay readable.
TERMINAL_INTERVAL_S, LOG_INTERVAL_S = 10.0, 30.0


def duration(seconds: float) -> str:
    """`1 h 02 min`, `3 min 05 s`, `12 s`."""
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
    if seconds >= 60:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds} s"


def _number(value, scale: float = 1.0, digits: int = 1) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return "-"
    return f"{scale * value:.{digits}f}"


def cell_row(trial, stopped: bool = False) -> tuple[str, ...]:
    """The table row of one Tune trial (`COLUMNS`); scores in percent, from its latest report.

    `stopped`: the run was interrupted, so a running trial is being stopped and a pending one will
    not start in this run.
    """
    config = trial.config or {}
    result = trial.last_result or {}
    name = describe_cell(config) if {"arch", "intervention", "seed"} <= set(config) else str(trial)
    phase = result.get("phase")
    epoch, total = result.get("epoch"), config.get(f"{phase}_epochs")
    epoch_text = "-" if epoch is None else f"{epoch}/{total}" if total else str(epoch)
    finetune = phase == "finetune"
    status = STATUS.get(trial.status, str(trial.status).lower())
    failures = getattr(getattr(trial, "run_metadata", None), "num_failures", 0)
    if stopped and trial.status in ("PENDING", "RUNNING", "PAUSED"):
        status = "stopped" if trial.status == "RUNNING" else "not started"
    elif failures and trial.status in ("PENDING", "RUNNING"):
        status += f" (retry {failures})"
    return (name, phase or "-", epoch_text, _number(result.get("id_f1"), 100) if finetune else "-",
            _number(result.get("ood_f1"), 100) if finetune else "-", _number(result.get("images_per_s"), digits=0),
            status)


def render_table(rows: list[tuple[str, ...]]) -> str:
    """`COLUMNS` and `rows` as aligned plain text (names left, numbers right), columns split by `|`
    so they stay apart where spaces collapse (the Ray dashboard's view of a job's driver log)."""
    widths = [max(len(r[i]) for r in [COLUMNS, *rows]) for i in range(len(COLUMNS))]
    right = {2, 3, 4, 5}

    def line(cells):
        return " | ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    return "\n".join(line(r).rstrip() for r in [COLUMNS, *rows])


class CellTable(ProgressReporter):
    """Tune progress reporter: a header line and one row per cell, at most every `interval` seconds.

    A table is printed only when something in it changed, and always when the run ends.
    """

    def __init__(self, title: str, interval: float | None = None, stream=None):
        self.title = title
        self.interval = interval
        self.stream = stream
        self._start = time.time()
        self._last_time = float("-inf")
        self._last_rows: list | None = None
        self.watch = None  # an `engine.interrupt.InterruptWatch`: tells the table the run was interrupted

    def __getstate__(self) -> dict:
        # Tune pickles its run configuration (this reporter included) into the experiment; no stream.
        return {"title": self.title, "interval": self.interval, "stream": None, "_start": self._start,
                "_last_time": float("-inf"), "_last_rows": None, "watch": None}

    def _rows(self, trials) -> list[tuple[str, ...]]:
        stopped = bool(self.watch is not None and self.watch.interrupted)
        return [cell_row(t, stopped) for t in trials]

    def setup(self, start_time: float | None = None, **kwargs) -> None:
        self._start = start_time or time.time()
        self._last_time, self._last_rows = float("-inf"), None

    def _out(self):
        return self.stream or sys.stdout

    def _interval(self) -> float:
        if self.interval is not None:
            return self.interval
        return TERMINAL_INTERVAL_S if self._out().isatty() else LOG_INTERVAL_S

    def should_report(self, trials, done: bool = False) -> bool:
        if done:
            return True
        if time.time() - self._last_time < self._interval():
            return False
        return self._rows(trials) != self._last_rows

    def report(self, trials, done: bool, *sys_info: str) -> None:
        rows = self._rows(trials)
        counts = {s: sum(r[-1].startswith(s) for r in rows)
                  for s in ("finished", "running", "pending", "errored", "stopped", "not started")}
        usage = next((s.split(":", 1)[1].strip() for s in sys_info if s.startswith("Logical resource usage")), "")
        states = ("running", "pending", "errored") if not counts["stopped"] + counts["not started"] else (
            "stopped", "not started", "errored")
        head = (f"{self.title}: {counts['finished']}/{len(rows)} cells finished, "
                + ", ".join(f"{counts[s]} {s}" for s in states)
                + f" | {duration(time.time() - self._start)}" + (f" | {usage}" if usage else ""))
        print(f"\n{head}\n{render_table(rows)}", file=self._out(), flush=True)
        self._last_time, self._last_rows = time.time(), rows
