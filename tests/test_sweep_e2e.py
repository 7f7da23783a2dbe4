"""End to end on a real local Ray cluster: the smoke sweep, a trial that fails once, and resume
after the driver is SIGKILLed. These run real data generation, training and Tune."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from analysis.ingest import load_experiments, load_trials
from conftest import ROOT, run_sweep_script, this_checkout_env

pytestmark = pytest.mark.slow
SMOKE_CELLS, SMOKE_EPOCHS = 4, 2  # scratch, full and two quantities of one architecture


def result_rows(trial_dir: Path) -> list[dict]:
    path = trial_dir / "result.json"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def assert_complete(sweep: Path) -> None:
    """Every cell finished, with exactly one row per fine-tuning epoch 1..E and scores in [0, 1]."""
    df = load_experiments([sweep])
    trials = load_trials([sweep])
    assert len(trials) == SMOKE_CELLS and set(trials["status"]) == {"finished"}, trials[["trial_id", "status"]]
    assert df["cell_id"].nunique() == SMOKE_CELLS
    for _, rows in df.groupby("cell_id"):
        assert sorted(rows["epoch"]) == list(range(1, SMOKE_EPOCHS + 1))
    assert df[["id_f1", "ood_f1", "id_val_f1", "ood_val_f1"]].apply(lambda s: s.between(0, 1).all()).all()
    for trial_dir in sweep.glob("exp-*/cell-*"):  # on disk too, not only after ingest de-duplicates
        epochs = [r["epoch"] for r in result_rows(trial_dir) if r.get("phase") == "finetune"]
        assert sorted(epochs) == list(range(1, SMOKE_EPOCHS + 1)), (trial_dir, epochs)


def test_smoke_sweep_retries_a_failing_trial_from_its_checkpoint(tmp_path):
    out = run_sweep_script("data_quantity.py", "--smoke", "--storage-path", str(tmp_path),
                           env={"SWEEPS_FAULT_AT": "finetune:2"}, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    sweep = tmp_path / "data_quantity-smoke"
    assert_complete(sweep)
    for trial_dir in sweep.glob("exp-*/cell-*"):
        assert "injected fault" in (trial_dir / "error.txt").read_text()  # each trial failed once ...
        epochs = [r["epoch"] for r in result_rows(trial_dir) if r.get("phase") == "finetune"]
        assert epochs == [1, 2]  # ... and resumed at epoch 2 from its checkpoint: epoch 1 ran once
    report = sweep / "report"
    for name in ("points.csv", "trends.csv", "scatter.png"):
        assert (report / name).stat().st_size > 100
    assert f"report:  {(report / 'report.html').as_uri()}" in out.stdout
    assert (tmp_path / "pretrained").is_dir() and len(list((tmp_path / "pretrained").glob("*/model.pt"))) == 3


def test_resume_after_sigkill_of_the_driver(tmp_path):
    sweep = tmp_path / "data_quantity-smoke"
    cmd = [sys.executable, str(ROOT / "sweeps" / "data_quantity.py"), "--smoke", "--no-report",
           "--storage-path", str(tmp_path)]
    log = open(tmp_path / "first.log", "w")
    driver = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=this_checkout_env())
    deadline = time.monotonic() + 400
    # Kill once some cell has fine-tuned an epoch: mid-run, with work in both phases.
    while time.monotonic() < deadline and driver.poll() is None:
        if any(r.get("phase") == "finetune" for d in sweep.glob("exp-*/cell-*") for r in result_rows(d)):
            break
        time.sleep(0.5)
    assert driver.poll() is None, "the sweep ended before it could be killed"
    os.kill(driver.pid, signal.SIGKILL)  # Ray's own processes are left running, as after a crash
    driver.wait()

    before = load_trials([sweep])
    finished = before[before["status"] == "finished"]
    snapshots = {Path(d): (Path(d) / "result.json").read_text() for d in finished["trial_dir"]}

    out = run_sweep_script("data_quantity.py", "--smoke", "--no-report", "--storage-path", str(tmp_path),
                           timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert_complete(sweep)
    for trial_dir, text in snapshots.items():  # finished cells were not re-run
        assert (trial_dir / "result.json").read_text() == text
    assert not (sweep / ".driver.json").exists()
