"""Faults on a real local Ray cluster, several injected into one sweep where they can be:

- `test_faults_in_one_sweep`: a stale `.driver.json` naming a live unrelated process (it must
  survive), two drivers started at once (one refuses), a trial raising at a random epoch (retried
  from its checkpoint), the driver SIGKILLed mid-sweep and the sweep re-run (the dead driver's Ray
  processes are stopped, nothing else; cells that had finished are not run again). The sweep ends
  with every cell finished exactly once per epoch, and the re-run writes the report.
- `test_unreadable_checkpoint_names_the_cell_and_path`: a cell fails and its checkpoint is then
  corrupted; the re-run ends with one line naming the cell, the exception and the checkpoint's
  path, a non-zero exit, and the other cells finished exactly once per epoch.
- `test_pretrain_wait_times_out_with_a_clear_message`: a cell waiting for another's pre-training.
- `test_pretraining_keeps_the_state_of_every_epoch_but_the_last`: what a killed pre-training
  resumes from, and the one state it need not write (the model file follows at once).

Ray runs under its own temporary directory (RAY_TMPDIR) per test, never the machine's default.
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch

from conftest import ROOT, this_checkout_env
from engine.driver_lock import LOCK_NAME, same_process, this_host

SMOKE_EPOCHS = 2
SMOKE_PRETRAIN_EPOCHS = 1


def rows(trial_dir: Path) -> list[dict]:
    path = trial_dir / "result.json"
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:  # a line being written
            continue
    return out


def finetune_epochs(trial_dir: Path) -> list[int]:
    return sorted(r["epoch"] for r in rows(trial_dir) if r.get("phase") == "finetune")


def sweep_cmd(storage: Path, *extra: str) -> list[str]:
    # scratch, full and quantity=100: three cells, two of them pre-trained
    return [sys.executable, str(ROOT / "sweeps" / "data_quantity.py"), "--smoke", "--no-report", "--values", "100",
            "--storage-path", str(storage), *extra]


def ray_env(tmp_path: Path, **extra: str) -> dict:
    ray_tmp = Path(f"/tmp/wt-ray-{os.getpid()}-{tmp_path.name[-6:]}")  # short: Ray's socket paths have a limit
    ray_tmp.mkdir(parents=True, exist_ok=True)
    return this_checkout_env({"RAY_TMPDIR": str(ray_tmp), **extra})


def sleeper() -> subprocess.Popen:
    proc = subprocess.Popen(["/bin/sh", "-c", "sleep 600 & echo up; wait"], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "up"
    return proc


def cells_of(sweep: Path) -> dict[str, Path]:
    return {d.name: d for d in sweep.glob("exp-*/cell-*") if d.is_dir()}


def assert_each_cell_once_per_epoch(sweep: Path, cells: int, but: set[str] = frozenset()) -> None:
    found = cells_of(sweep)
    assert len(found) == cells, sorted(found)
    for name, trial_dir in found.items():
        if name not in but:
            assert finetune_epochs(trial_dir) == list(range(1, SMOKE_EPOCHS + 1)), (trial_dir, finetune_epochs(trial_dir))


@pytest.mark.slow
def test_faults_in_one_sweep(tmp_path):
    sweep = tmp_path / "data_quantity-smoke"
    phase = random.choice(["finetune", "pretrain"])
    epoch = random.randint(1, SMOKE_EPOCHS if phase == "finetune" else SMOKE_PRETRAIN_EPOCHS)
    fault = f"{phase}:{epoch}"
    print(f"injected: SWEEPS_FAULT_AT={fault}")
    env = ray_env(tmp_path, SWEEPS_FAULT_AT=fault)

    # (5) a stale lock of a driver of this host whose pid now belongs to a live unrelated process
    unrelated = sleeper()
    unrelated_started = psutil.Process(unrelated.pid).create_time()
    sweep.mkdir(parents=True)
    (sweep / LOCK_NAME).write_text(json.dumps({
        **this_host(), "pid": unrelated.pid, "started": unrelated_started - 1000,
        "ray": [{"pid": unrelated.pid, "started": unrelated_started - 1000}]}))
    try:
        # (6) two drivers started at once on the sweep
        logs = [open(tmp_path / f"driver{i}.log", "w") for i in range(2)]
        drivers = [subprocess.Popen(sweep_cmd(tmp_path), cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
                   for log in logs]
        deadline = time.monotonic() + 540
        refused = None
        while time.monotonic() < deadline and refused is None:
            refused = next((i for i, d in enumerate(drivers) if d.poll() is not None), None)
            time.sleep(0.2)
        assert refused is not None, "neither driver refused"
        running = drivers[1 - refused]
        refusal = (tmp_path / f"driver{refused}.log").read_text()
        assert drivers[refused].returncode == 2 and "another driver" in refusal, refusal
        # it names the running driver, or (refused before that driver replaced the stale record) none
        assert f"pid {running.pid}" in refusal or "a driver that is starting" in refusal, refusal
        assert f"pid {unrelated.pid} " not in refusal  # never the stale record's pid

        # (3) SIGKILL the running driver once a cell has fine-tuned an epoch
        while time.monotonic() < deadline and running.poll() is None:
            if any(finetune_epochs(d) for d in cells_of(sweep).values()):
                break
            time.sleep(0.3)
        assert running.poll() is None, (tmp_path / f"driver{1 - refused}.log").read_text()[-3000:]
        lock = json.loads((sweep / LOCK_NAME).read_text())
        assert lock["pid"] == running.pid and lock["ray"], lock  # it recorded the Ray processes it started
        os.kill(running.pid, signal.SIGKILL)
        running.wait()
        left = [entry for entry in lock["ray"] if same_process(entry)]
        assert left, "a SIGKILLed driver leaves its Ray processes running"
        finished = {d: (d / "result.json").read_text() for d in cells_of(sweep).values()
                    if finetune_epochs(d) == list(range(1, SMOKE_EPOCHS + 1))}

        # re-run with the report (the first drivers ran without one)
        rerun = [arg for arg in sweep_cmd(tmp_path) if arg != "--no-report"]
        out = subprocess.run(rerun, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
        for trial_dir, text in finished.items():  # cells finished before the kill were not run again
            assert (trial_dir / "result.json").read_text() == text
        assert not any(same_process(entry) for entry in left)  # the dead driver's Ray processes were stopped
        assert unrelated.poll() is None  # ... and the unrelated process named by the stale lock was not
        assert psutil.Process(unrelated.pid).create_time() == unrelated_started
    finally:
        unrelated.kill()
        unrelated.wait()
    assert_each_cell_once_per_epoch(sweep, 3)
    # (1) every cell that runs the faulty phase raised once (the hook marks it just before raising; a
    # failure the killed driver never recorded leaves no error.txt) and ended with each epoch once
    raised = (list(tmp_path.glob(f".faults/*/.fault-{phase}-{epoch}")) if phase == "finetune"
              else list((tmp_path / "pretrained").glob(f"*/.fault-{phase}-{epoch}")))
    assert len(raised) == (3 if phase == "finetune" else 2), fault
    recorded = [d for d in cells_of(sweep).values()
                if (d / "error.txt").exists() and "injected fault" in (d / "error.txt").read_text()]
    assert recorded, "no retried failure was recorded by Tune"
    assert not (sweep / LOCK_NAME).exists()
    assert len(list((tmp_path / "pretrained").glob("*/model.pt"))) == 2  # full and quantity=100, once each
    report = sweep / "report"
    for name in ("points.csv", "trends.csv", "scatter.png"):
        assert (report / name).stat().st_size > 100
    assert f"report:  {(report / 'report.html').as_uri()}" in out.stdout


@pytest.mark.slow
def test_unreadable_checkpoint_names_the_cell_and_path(tmp_path):
    sweep = tmp_path / "data_quantity-smoke"
    # Every cell fails before its second fine-tuning epoch and is not retried: each keeps its epoch-1 checkpoint.
    env = ray_env(tmp_path, SWEEPS_FAULT_AT="finetune:2")
    # --max-concurrent 1: one cell at a time (2 would fit on this machine's 2 CPUs)
    first = subprocess.run(sweep_cmd(tmp_path, "--max-failures", "0", "--max-concurrent", "1"), cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=600)
    # A sweep whose cells all failed exits non-zero with one line per cell: name, exception, log.
    assert first.returncode == 1, first.stdout[-3000:] + first.stderr[-3000:]
    assert "failed: 3 of 3 cells ended with an error" in first.stderr
    for trial_dir in cells_of(sweep).values():
        line = next(line for line in first.stderr.splitlines() if f"(cell {trial_dir.name[5:]})" in line)
        assert "injected fault before finetune epoch 2" in line and f"log: {trial_dir / 'error.txt'}" in line

    # one at a time: ordered by start (first report's time minus its time since the trial started), each cell
    # started after the previous one's last report (Tune's timestamps are whole seconds: 1 s of slack)
    spans = sorted((r[0]["timestamp"] - r[0]["time_total_s"], r[-1]["timestamp"])
                   for r in map(rows, cells_of(sweep).values()))
    assert all(later[0] >= earlier[1] - 1 for earlier, later in zip(spans, spans[1:])), spans

    victim = sorted(cells_of(sweep).values())[0]
    checkpoints = sorted(victim.glob("checkpoint_*"))
    assert checkpoints and finetune_epochs(victim) == [1]
    for checkpoint in checkpoints:  # (4) made unreadable
        (checkpoint / "state.pt").write_bytes(b"not a torch file")
    out = subprocess.run(sweep_cmd(tmp_path), cwd=ROOT, env={**env, "SWEEPS_FAULT_AT": ""}, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 1, out.stdout[-3000:] + out.stderr[-3000:]
    failed = [line for line in out.stderr.splitlines() if line.startswith("  ") and " (cell " in line and "log: " in line]
    assert "failed: 1 of 3 cells ended with an error" in out.stderr
    assert len(failed) == 1 and f"(cell {victim.name[5:]})" in failed[0], out.stderr
    assert "CorruptCheckpoint" in failed[0] and str(checkpoints[-1]) in failed[0]
    assert finetune_epochs(victim) == [1]  # its epoch was not trained a second time
    assert_each_cell_once_per_epoch(sweep, 3, but={victim.name})


def test_pretrain_wait_times_out_with_a_clear_message(tmp_path):
    from filelock import FileLock

    from engine.inputs import PretrainInputs
    from engine.pretrain import PretrainWaitTimeout, RunContext, cache_dir, pretrain
    from engine.recipes import SMOKE_RECIPE
    from engine.spec import SweepSpec, cells

    spec = SweepSpec(name="t", intervention="quantity", values=(100,), sources=("synthnet",), archs=("resnet18",),
                     recipe=SMOKE_RECIPE)
    inputs = PretrainInputs.from_config(next(c for c in cells(spec) if c["intervention"] == "quantity"))
    context = RunContext(storage=str(tmp_path), data_root=None, cache_dir=str(tmp_path / "cache"), git_sha="test",
                         pretrain_wait_s=0.5)
    cache = cache_dir(tmp_path, inputs).path
    cache.mkdir(parents=True)
    holder = FileLock(str(cache / ".lock"))
    with holder:  # another trial pre-training the same model
        (cache / ".holder.json").write_text(json.dumps({"host": "node-7", "pid": 4242}))
        with pytest.raises(PretrainWaitTimeout) as err:
            pretrain(inputs, context, cpus=1, device=torch.device("cpu"))
    message = str(err.value)
    assert str(cache / ".lock") in message and "pid 4242 on node-7" in message and "--pretrain-wait" in message
    assert "\n" not in message and not (cache / "model.pt").exists()


def test_pretraining_keeps_the_state_of_every_epoch_but_the_last(tmp_path, monkeypatch):
    from dataclasses import replace

    from datasets.storage.location import Location
    from engine.inputs import PretrainInputs
    from engine.pretrain import RunContext, cache_dir, pretrain
    from engine.recipes import SMOKE_RECIPE
    from engine.spec import SweepSpec, cells

    epochs = 3
    spec = SweepSpec(name="t", intervention="quantity", values=(100,), sources=("synthnet",),
                     archs=("mobilenet_v3_small",), recipe=replace(SMOKE_RECIPE, pretrain_epochs=epochs))
    inputs = PretrainInputs.from_config(next(c for c in cells(spec) if c["intervention"] == "quantity"))
    context = RunContext(storage=str(tmp_path), data_root=None, cache_dir=str(tmp_path / "cache"), git_sha="test")
    saved = []
    real_save = Location.save_torch

    def recording(location, obj):
        saved.append((Path(location.uri).name, obj.get("epoch")))
        real_save(location, obj)

    monkeypatch.setattr(Location, "save_torch", recording)
    pretrain(inputs, context, cpus=1, device=torch.device("cpu"))
    # a state after epochs 1 and 2 (a trial killed in epoch 2 or 3 resumes from it), then the model
    assert saved == [("state.pt", 1), ("state.pt", 2), ("model.pt", None)], saved
    cache = cache_dir(tmp_path, inputs).path
    assert (cache / "model.pt").exists() and not (cache / "state.pt").exists()
