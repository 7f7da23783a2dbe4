"""A multi-node Ray cluster on this machine (`ray.cluster_utils.Cluster`): a head that runs no
trials and worker nodes each with its own SWEEPS_CACHE, sharing no storage path: the sweep lives on
`s3://` (the `s3` fixture's local server), as on a cluster whose workers share no disk. The smoke
sweep's trials land on more than one node; each node copies the `.beton` files it reads once into
its own cache from what the driver shared through the store (it converts none); and a worker node
removed while a trial runs on it (chaos: a lost node) costs that trial a retry from its last
checkpoint on the store, not a result: every cell ends finished exactly once per epoch.

Ray runs under this test's own temporary directory and ports; only the nodes it started are
stopped.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from conftest import BUCKET, ROOT, this_checkout_env
from datasets.storage.location import Location

pytestmark = pytest.mark.slow
SMOKE_EPOCHS = 2


def rows(trial_dir: Location) -> list[dict]:
    try:
        text = (trial_dir / "result.json").read_text()
    except FileNotFoundError:
        return []
    out = []
    for line in text.splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def raylet_pid(node) -> int:
    return node.all_processes["raylet"][0].process.pid


def node_of(pid: int, nodes: dict) -> str | None:
    """The name of the node whose raylet started process `pid` (a trial's worker), if any."""
    try:
        parents = {p.pid for p in psutil.Process(pid).parents()}
    except psutil.NoSuchProcess:
        return None
    return next((name for name, node in nodes.items() if raylet_pid(node) in parents), None)


@pytest.fixture
def cluster(tmp_path, monkeypatch):
    from ray.cluster_utils import Cluster

    ray_tmp = Path(f"/tmp/wt-ray-{os.getpid()}-mn")
    (ray_tmp / "ray").mkdir(parents=True, exist_ok=True)  # Ray writes its address file under $RAY_TMPDIR/ray
    for key, value in this_checkout_env({"RAY_TMPDIR": str(ray_tmp)}).items():
        monkeypatch.setenv(key, value)  # the nodes' workers import this checkout
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False,
                                                      "temp_dir": str(ray_tmp / "ray")})
    c.logs = ray_tmp / "ray"   # the nodes' session logs (trials' output: worker-*.out)
    yield c
    c.shutdown()


def trial_dirs(sweep: Location) -> list[Location]:
    return [t for e in sweep.entries("exp-*", kind="dir") for t in e.entries("cell-*", kind="dir")]


def test_sweep_on_two_nodes_survives_a_lost_node(tmp_path, s3, cluster):
    caches = {}
    nodes = {}

    def add(name: str):
        caches[name] = tmp_path / f"cache-{name}"
        nodes[name] = cluster.add_node(num_cpus=1, env_vars={"SWEEPS_CACHE": str(caches[name])})

    add("a")
    add("b")
    storage = Location.of(f"s3://{BUCKET}/multinode")
    sweep = storage / "data_quantity-smoke"
    cmd = [sys.executable, str(ROOT / "sweeps" / "data_quantity.py"), "--smoke", "--no-report",
           "--storage-path", str(storage), "--address", cluster.address, "--max-failures", "3"]
    log = open(tmp_path / "driver.log", "w")
    driver = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                              env=this_checkout_env({"SWEEPS_CACHE": str(tmp_path / "cache-driver")}))
    removed, seen_on = None, {}
    first_inode: dict[tuple[str, str], int] = {}  # (node, .beton name) -> inode when first seen

    def watch_betons() -> None:
        for node, cache in caches.items():
            for beton in (cache / "betons").glob("*.beton"):
                try:
                    first_inode.setdefault((node, beton.name), beton.stat().st_ino)
                except FileNotFoundError:
                    continue

    deadline = time.monotonic() + 500
    while time.monotonic() < deadline and driver.poll() is None:
        watch_betons()
        for trial_dir in trial_dirs(sweep):
            for row in rows(trial_dir):
                name = node_of(row["pid"], nodes) if "pid" in row else None
                if name:
                    seen_on.setdefault(trial_dir.name, set()).add(name)
            if removed is None and any(r.get("phase") == "finetune" for r in rows(trial_dir)) \
                    and len(rows(trial_dir)) and rows(trial_dir)[-1].get("epoch", 0) < SMOKE_EPOCHS:
                name = node_of(rows(trial_dir)[-1]["pid"], nodes)
                if name:  # the trial is between epochs 1 and 2 on that node: take the node away
                    cluster.remove_node(nodes.pop(name), allow_graceful=False)
                    removed = (name, trial_dir)
                    add("c")  # a replacement, as an autoscaler would start one
        time.sleep(0.3)
    assert driver.wait(timeout=600) == 0, (tmp_path / "driver.log").read_text()[-4000:]
    assert removed is not None, "no trial was caught mid-sweep on a node"

    cells = {d.name: d for d in trial_dirs(sweep)}
    assert len(cells) == 4
    for trial_dir in cells.values():
        epochs = sorted(r["epoch"] for r in rows(trial_dir) if r.get("phase") == "finetune")
        assert epochs == list(range(1, SMOKE_EPOCHS + 1)), (trial_dir, epochs)
    name, victim = removed
    error = (victim / "error.txt").read_text()
    # Ray's words for an actor whose node went away (its worker process is gone with the node)
    assert "The actor" in error and ("unavailable" in error or "died" in error), error[-2000:]
    # trials ran on more than one node, and every node that ran one built its .beton files in its own cache
    used = set().union(*seen_on.values())
    assert len(used) >= 2, seen_on
    watch_betons()
    output = "".join(p.read_text(errors="replace") for p in cluster.logs.glob("session_*/logs/worker-*.out"))
    for node in used:
        betons = sorted((caches[node] / "betons").glob("*.beton"))
        assert betons, node
        # copied from what the driver shared through the store (the sweep is on s3://), never converted there
        for beton in betons:
            assert f"fetched {beton.name} from s3://{BUCKET}/multinode/betons into {beton.parent}" in output, beton
        # converted once: a second conversion would have renamed a new file (a new inode) over the first
        for beton in betons:
            assert beton.stat().st_ino == first_inode[(node, beton.name)], (node, beton.name)
        assert not [p for p in (caches[node] / "betons").iterdir() if ".tmp" in p.name]
