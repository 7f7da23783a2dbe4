"""`s3://` storage, against a real S3-compatible server (moto in server mode on 127.0.0.1).

The server is reached the way a user reaches MinIO or Ceph: `AWS_ENDPOINT_URL` plus credentials in
the environment. Nothing here talks to AWS.

- Leases (`engine.object_lock`): of drivers racing for one sweep exactly one gets it; a lease of
  another host is refused while it is renewed and taken over once it is not; a holder cut off for
  longer than its lease learns that it lost it and does not delete its successor's lock.
- Pre-training on object storage waits for another trial's lease and times out with one line.
- `test_sweep_on_s3_survives_faults` (slow): a smoke sweep on `s3://` with two drivers started at
  once, a trial raising at a random epoch and the driver SIGKILLed; the re-run finishes every cell
  with each epoch once, and `python -m analysis report s3://...` reads the sweep.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import BUCKET, ROOT
from engine.driver_lock import DriverLockError, same_process, take_lock, this_host
from engine.object_lock import LeaseLock, LockHeld
from datasets.storage.location import Location

def keys(prefix: str) -> list[str]:
    """The objects under `prefix`, without the empty directory markers pyarrow writes (`.../`)."""
    import boto3

    pages = boto3.client("s3").get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", []) if not o["Key"].endswith("/")]


def put(key: str, body: dict) -> None:
    import boto3

    boto3.client("s3").put_object(Bucket=BUCKET, Key=key, Body=json.dumps(body).encode())


def test_location_reads_and_writes_s3_like_a_directory(s3):
    root = Location.of(f"s3://{BUCKET}/loc/")
    assert root.uri == f"s3://{BUCKET}/loc" and root.remote and root.name == "loc"
    (root / "exp-000" / "cell-a" / "result.json").write_text('{"epoch": 1}\n')
    (root / "exp-001" / "x.json").write_text("{}")
    (root / "notes.txt").write_bytes(b"n")
    assert [e.name for e in root.entries("exp-*", kind="dir")] == ["exp-000", "exp-001"]
    assert [e.name for e in root.entries(kind="file")] == ["notes.txt"]
    assert (root / "exp-000" / "cell-a" / "result.json").read_text() == '{"epoch": 1}\n'
    with pytest.raises(FileNotFoundError):
        (root / "missing.json").read_bytes()
    (root / "exp-000").move_to(root / "exp-000.old")
    assert sorted(k.removeprefix("loc/") for k in keys("loc/")) == ["exp-000.old/cell-a/result.json",
                                                                    "exp-001/x.json", "notes.txt"]


def test_racing_clients_get_one_lease(s3):
    location = Location.of(f"s3://{BUCKET}/race/.sweep.driver.lock")
    start, results, held_leases = threading.Barrier(6), [], []

    def contend(i: int) -> None:
        lease = LeaseLock(location, {"who": i}, lease_s=30)
        start.wait()
        try:
            lease.try_acquire()
            results.append(("held", i))
            held_leases.append(lease)
        except LockHeld as held:
            results.append(("refused", held.holder["who"]))

    threads = [threading.Thread(target=contend, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [i for what, i in results if what == "held"]
    assert len(winners) == 1, results
    assert all(who == winners[0] for what, who in results if what == "refused"), results  # they name the winner
    for lease in held_leases:  # stops its renewing thread (it would renew for the rest of the session)
        lease.release()
    assert not location.exists()


class CutOff(LeaseLock):
    """A holder that can no longer reach the store to renew (a network partition): it never renews."""

    def _renew_loop(self) -> None:
        return


def test_a_holder_cut_off_past_its_lease_loses_it(s3):
    location = Location.of(f"s3://{BUCKET}/lost/.lock")
    first_lost = []
    first = CutOff(location, {"who": "first"}, lease_s=1.0, on_lost=first_lost.append)
    assert first.try_acquire() is None
    second = LeaseLock(location, {"who": "second"}, lease_s=30)
    with pytest.raises(LockHeld):
        second.try_acquire()  # current: never taken over
    time.sleep(3.2)  # past the 1 s lease plus the store clock's 1 s resolution
    assert second.try_acquire()["who"] == "first"  # expired: taken over, and the old holder is returned
    assert not first.renew() and first.lost and "taken over" in first_lost[0]
    first.release()  # must not delete its successor's lock
    assert json.loads(location.read_text())["who"] == "second"
    second.release()
    assert not location.exists()


def test_driver_lock_on_s3_refuses_a_live_lease_of_another_host_and_takes_an_expired_one(s3, monkeypatch):
    sweep = Location.of(f"s3://{BUCKET}/hosts/data_quantity")
    put("hosts/.data_quantity.driver.lock", {"host": "node-7", "boot_id": "b", "pid": 4242, "started": 1.0,
                                            "ray": [], "lease_s": 2})
    with pytest.raises(DriverLockError) as err:
        take_lock(sweep)
    message = str(err.value)
    assert "pid 4242 on host node-7" in message and "renewed" in message and "\n" not in message
    time.sleep(4.2)  # node-7 stopped renewing: its 2 s lease (+ 1 s of clock resolution) runs out
    lock = take_lock(sweep)
    try:
        held = json.loads(Location.of(f"s3://{BUCKET}/hosts/.data_quantity.driver.lock").read_text())
        assert held["pid"] == os.getpid() and held["host"] == this_host()["host"]
    finally:
        lock.release()
    assert not keys("hosts/")


def test_driver_lock_on_s3_takes_over_at_once_from_a_dead_driver_of_this_host(s3):
    dead = subprocess.Popen(["/bin/true"])
    dead.wait()
    sleeper = subprocess.Popen(["sleep", "600"])
    import psutil

    started = psutil.Process(sleeper.pid).create_time()
    try:
        # the record of a dead driver whose "Ray process" pid now belongs to a live unrelated process
        put("dead/.sq.driver.lock", {**this_host(), "pid": dead.pid, "started": 1.0, "lease_s": 3600,
                                     "ray": [{"pid": sleeper.pid, "started": started - 1000}]})
        lock = take_lock(Location.of(f"s3://{BUCKET}/dead/sq"))  # a fresh lease, yet its driver is gone
        lock.release()
        assert sleeper.poll() is None and same_process({"pid": sleeper.pid, "started": started})
    finally:
        sleeper.kill()
        sleeper.wait()


def test_pretrain_wait_on_s3_times_out_with_one_line(s3, tmp_path):
    import torch

    from engine.inputs import PretrainInputs
    from engine.pretrain import PretrainWaitTimeout, RunContext, cache_dir, pretrain
    from engine.recipes import SMOKE_RECIPE
    from engine.spec import SweepSpec, cells

    spec = SweepSpec(name="t", intervention="quantity", values=(100,), sources=("synthnet",), archs=("resnet18",),
                     recipe=SMOKE_RECIPE)
    inputs = PretrainInputs.from_config(next(c for c in cells(spec) if c["intervention"] == "quantity"))
    storage = f"s3://{BUCKET}/wait"
    context = RunContext(storage=storage, data_root=None, cache_dir=str(tmp_path), git_sha="test", pretrain_wait_s=0.5)
    cache = cache_dir(storage, inputs)
    put(f"wait/pretrained/{inputs.key}/.lock", {"host": "node-7", "pid": 4242, "lease_s": 3600})  # another trial
    with pytest.raises(PretrainWaitTimeout) as err:
        pretrain(inputs, context, cpus=1, device=torch.device("cpu"))
    message = str(err.value)
    assert str(cache / ".lock") in message and "pid 4242 on node-7" in message and "--pretrain-wait" in message
    assert "\n" not in message and not (cache / "model.pt").exists()


def test_cleanup_lists_then_deletes_on_s3(s3, tmp_path, capsys):
    from engine.cleanup import main

    put("clean/data_quantity.old-20260101-000000/exp-000/experiment_state-x.json", {"trial_data": []})
    put("clean/pretrained/0123456789abcdef/meta.json", {"schema": 2})
    Location.of(f"s3://{BUCKET}/clean/pretrained/0123456789abcdef/model.pt").write_bytes(b"x" * 1000)
    argv = ["--storage-path", f"s3://{BUCKET}/clean", "--cache", str(tmp_path)]
    assert main(argv) == 0
    listed = capsys.readouterr().out
    assert f"s3://{BUCKET}/clean/data_quantity.old-20260101-000000  (moved aside by --fresh)" in listed
    assert f"s3://{BUCKET}/clean/pretrained/0123456789abcdef  (no cell of any sweep loads it)" in listed
    assert "would free" in listed and len(keys("clean/")) == 3  # a dry run deletes nothing
    assert main([*argv, "--delete"]) == 0
    assert keys("clean/") == []


# ---- a whole sweep on s3://, with faults

SMOKE_EPOCHS = 2


def result_rows(key: str) -> list[dict]:
    try:
        text = Location.of(f"s3://{BUCKET}/{key}").read_text()
    except FileNotFoundError:
        return []
    out = []
    for line in filter(str.strip, text.splitlines()):
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def finetune_epochs(sweep_key: str) -> dict[str, list[int]]:
    """Per trial dir on the store: its fine-tuning epochs in result.json."""
    out = {}
    for key in keys(sweep_key + "/"):
        parts = key.split("/")
        if parts[-1] == "result.json" and parts[-2].startswith("cell-"):
            out[parts[-2]] = sorted(r["epoch"] for r in result_rows(key) if r.get("phase") == "finetune")
    return out


@pytest.mark.slow
def test_sweep_on_s3_survives_faults(s3, tmp_path):
    storage = f"s3://{BUCKET}/e2e"
    sweep_key = "e2e/data_quantity-smoke"
    phase = random.choice(["finetune", "pretrain"])
    epoch = random.randint(1, SMOKE_EPOCHS) if phase == "finetune" else 1
    print(f"injected: SWEEPS_FAULT_AT={phase}:{epoch}")
    ray_tmp = Path(f"/tmp/s3-ray-{os.getpid()}")
    ray_tmp.mkdir(exist_ok=True)
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, **s3, "PYTHONPATH": path, "RAY_TMPDIR": str(ray_tmp), "SWEEPS_FAULT_AT": f"{phase}:{epoch}"}
    # scratch, full and quantity=100: three cells, one pre-trained model shared by nothing else
    cmd = [sys.executable, str(ROOT / "sweeps" / "data_quantity.py"), "--smoke", "--no-report", "--values", "100",
           "--storage-path", storage]

    logs = [open(tmp_path / f"driver{i}.log", "w") for i in range(2)]
    drivers = [subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT) for log in logs]
    deadline = time.monotonic() + 540
    refused = None
    while time.monotonic() < deadline and refused is None:
        refused = next((i for i, d in enumerate(drivers) if d.poll() is not None), None)
        time.sleep(0.2)
    running = drivers[1 - refused]
    refusal = (tmp_path / f"driver{refused}.log").read_text()
    assert drivers[refused].returncode == 2 and "another driver" in refusal and f"pid {running.pid}" in refusal, refusal

    # SIGKILL the running driver once a cell has fine-tuned an epoch (its rows are on the store)
    while time.monotonic() < deadline and running.poll() is None:
        if any(finetune_epochs(sweep_key).values()):
            break
        time.sleep(0.5)
    assert running.poll() is None, (tmp_path / f"driver{1 - refused}.log").read_text()[-3000:]
    lock = json.loads(Location.of(f"{storage}/.data_quantity-smoke.driver.lock").read_text())
    assert lock["pid"] == running.pid and lock["ray"], lock
    os.kill(running.pid, signal.SIGKILL)
    running.wait()
    left = [entry for entry in lock["ray"] if same_process(entry)]
    assert left, "a SIGKILLed driver leaves its Ray processes running"

    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert not any(same_process(entry) for entry in left)  # the dead driver's Ray processes were stopped
    epochs = finetune_epochs(sweep_key)
    assert len(epochs) == 3 and all(e == list(range(1, SMOKE_EPOCHS + 1)) for e in epochs.values()), epochs
    stored = keys("e2e/")
    assert sum(k.startswith("e2e/pretrained/") and k.endswith("/model.pt") for k in stored) == 2  # full, quantity=100
    assert any(k.startswith(f"{sweep_key}/tensorboard/") for k in stored)
    assert not [k for k in stored if k.endswith(".lock")]  # every lease was released
    faulted = [k for k in stored if k.endswith(f".fault-{phase}-{epoch}")]
    assert len(faulted) == (3 if phase == "finetune" else 2), faulted  # every cell that runs that phase raised once

    report = subprocess.run([sys.executable, "-m", "analysis", "report", f"{storage}/data_quantity-smoke"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert report.returncode == 0, report.stdout[-3000:] + report.stderr[-3000:]
    points = Location.of(f"{storage}/data_quantity-smoke/report/points.csv").read_text().splitlines()
    import csv

    rows = list(csv.DictReader(points))
    assert {r["cell_id"] for r in rows} == {k.removeprefix("cell-") for k in epochs}, rows[:3]


def test_a_node_copies_published_data_files_instead_of_converting_them(s3, tmp_path, monkeypatch):
    import numpy as np

    from datasets.storage.beton import ensure_beton, read_labels
    from datasets.storage.shared_cache import STORE_ENV, fetch, publish

    monkeypatch.setenv(STORE_ENV, f"s3://{BUCKET}/store/betons")
    images = [(np.full((8, 8, 3), i, dtype=np.uint8), i % 3) for i in range(10)]
    driver = tmp_path / "driver" / "toy-train-8px-0123456789abcdef.beton"
    ensure_beton(driver, lambda: images, estimated_bytes=10_000, max_resolution=8)
    skipped = driver.with_name(driver.name.replace(".beton", ".skipped.txt"))
    skipped.write_text("# checked\n")
    assert publish(driver) and publish(skipped)
    assert not publish(driver)  # named by content: never uploaded twice
    assert Location.of(f"s3://{BUCKET}/store/betons/{driver.name}").read_bytes() == driver.read_bytes()

    def never() -> list:
        raise AssertionError("converted although the store has the file")

    node = tmp_path / "node" / driver.name  # another node's cache: empty
    assert ensure_beton(node, never, estimated_bytes=10_000, max_resolution=8) == node
    assert node.read_bytes() == driver.read_bytes() and read_labels(node).tolist() == [i % 3 for i in range(10)]
    assert fetch(node.with_name(skipped.name)) and node.with_name(skipped.name).read_text() == "# checked\n"
    assert not fetch(tmp_path / "node" / "other-train-8px-fedcba9876543210.beton")  # not in the store
    assert not [p for p in node.parent.iterdir() if ".tmp" in p.name]


@pytest.mark.parametrize("prepared", [None, 1.0], ids=["default-storage", "prepared-all-jpeg"])
def test_a_node_neither_checks_nor_converts_an_on_disk_dataset_the_driver_shared(s3, tmp_path, monkeypatch, prepared):
    """An ImageNet-layout dataset with 3 corrupt images: the driver converts it (its check) and shares the
    file and the record; a node with an empty cache gets both from the store and decodes nothing, also
    when the driver's file was prepared with another storage than the default (`--jpeg-fraction 1`)."""
    from datasets import get_source
    from datasets.readers.image_files import ImageFiles, ImageFileSource
    from datasets.storage.beton import read_labels
    from datasets.storage.shared_cache import STORE_ENV, publish
    from layouts import WNIDS, add_corrupt_images, write_imagenet

    write_imagenet(tmp_path / "data")
    corrupt = {p.name for p in add_corrupt_images(tmp_path / "data" / "imagenet" / "train" / WNIDS[1])}
    monkeypatch.setenv(STORE_ENV, f"s3://{BUCKET}/ondisk-{prepared}/betons")
    monkeypatch.setenv("SWEEPS_CACHE", str(tmp_path / "driver-cache"))
    driver = get_source("imagenet", tmp_path / "data")
    driver.jpeg_fraction = prepared
    beton = driver.beton("train", 32)
    assert publish(beton) and publish(driver.skipped_log("train"))

    def decode(*args, **kwargs):
        raise AssertionError("the node decoded images the driver had shared")

    monkeypatch.setattr(ImageFileSource, "_check", decode)  # the check's decodes
    monkeypatch.setattr(ImageFiles, "__getitem__", decode)   # the conversion's decodes
    monkeypatch.setattr(ImageFileSource, "_write", decode)   # a conversion at all (fails here, not in FFCV's workers)
    monkeypatch.setenv("SWEEPS_CACHE", str(tmp_path / "node-cache"))
    node = get_source("imagenet", tmp_path / "data")
    listed = node.scans["train"].files
    expected = [int(y) for f, y in zip(listed, node.scans["train"].labels) if Path(f).name not in corrupt]
    assert len(expected) == len(listed) - 3  # hand count: every listed file but the three corrupt ones
    assert node.labels("train").tolist() == expected  # from the fetched record, not a check
    usage = shutil.disk_usage(tmp_path)
    with monkeypatch.context() as m:  # the copy is checked against free space, as a conversion is
        m.setattr(shutil, "disk_usage", lambda p: usage._replace(free=100))
        with pytest.raises(OSError, match="not enough disk space"):
            node.beton("train", 32)
    fetched = node.beton("train", 32)
    assert fetched.parent == tmp_path / "node-cache" / "betons" and fetched.name == beton.name
    assert read_labels(fetched).tolist() == expected and node.num_skipped("train") == 3
