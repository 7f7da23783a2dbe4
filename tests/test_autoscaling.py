"""An autoscaling Ray cluster on this machine (Ray's fake multi-node provider): it starts with no
worker, adds workers for pending trials, runs them there and removes the workers once idle.

The head is started here with `RAY_FAKE_CLUSTER=1 ray start --head --autoscaling-config=...` on
ports and a temporary directory of this test's own (`ray.cluster_utils.AutoscalingCluster` would
run `ray stop --force`, which ends every Ray process on the machine). At the end only processes
whose command line names this test's Ray directory are stopped: they are provably this test's.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
import yaml

pytestmark = pytest.mark.slow

DRIVER = r"""
import json, sys, time
import ray
from ray import tune

ray.init(address=sys.argv[1], log_to_driver=False)
head = ray.get_runtime_context().get_node_id()

def workers():
    return [n["NodeID"] for n in ray.nodes() if n["Alive"] and n["NodeID"] != head]

before = workers()

def trainable(config):
    time.sleep(3)
    tune.report({"node": ray.get_runtime_context().get_node_id()})

tuner = tune.Tuner(tune.with_resources(trainable, {"cpu": 1}), param_space={"i": tune.grid_search([0, 1])},
                   run_config=tune.RunConfig(storage_path=sys.argv[2], verbose=0))
results = tuner.fit()
used = sorted({r.metrics["node"] for r in results})
during = workers()
deadline = time.monotonic() + 120
while workers() and time.monotonic() < deadline:
    time.sleep(1)
print(json.dumps({"head": head, "before": before, "used": used, "during": during, "after": workers(),
                  "errors": results.num_errors}))
"""


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def ours(marker: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline", "environ"]):
        try:
            cmd = " ".join(proc.info["cmdline"] or [])
            env = proc.info["environ"] or {}
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if marker in cmd or env.get("RAY_TMPDIR") == marker:
            found.append(proc)
    return found


def test_cluster_scales_up_for_pending_trials_and_down_when_idle(tmp_path):
    ray_dir = f"/tmp/wt-ray-as-{os.getpid()}"  # short: Ray's socket paths have a length limit
    Path(ray_dir).mkdir(parents=True, exist_ok=True)
    from ray._private.services import get_node_ip_address

    ip = get_node_ip_address()  # where `ray start` binds; the fake workers and the driver reach the head there
    gcs, node_manager, object_manager, client, agent_grpc, agent_http, metrics, runtime_env = free_ports(8)
    config = {
        "cluster_name": "fake-autoscaling",
        "max_workers": 2,
        "provider": {"type": "fake_multinode", "gcs_address": f"{ip}:{gcs}", "use_node_id_as_ip": True,
                     "disable_node_updaters": True, "disable_launch_config_check": True},
        "available_node_types": {
            "ray.head.default": {"resources": {"CPU": 0}, "node_config": {}, "max_workers": 0},
            "ray.worker.cpu": {"resources": {"CPU": 1}, "node_config": {}, "min_workers": 0, "max_workers": 2},
        },
        "head_node_type": "ray.head.default",
        "auth": {}, "upscaling_speed": 1.0, "idle_timeout_minutes": 0.05, "docker": {},
        "initialization_commands": [], "setup_commands": [], "head_setup_commands": [], "worker_setup_commands": [],
        "head_start_ray_commands": [], "worker_start_ray_commands": [], "file_mounts": {},
        "cluster_synced_files": [], "file_mounts_sync_continuously": False, "rsync_exclude": [], "rsync_filter": [],
    }
    (tmp_path / "autoscaling.yaml").write_text(yaml.safe_dump(config))
    # `ray start` turns on token authentication (the token in ~/.ray/auth_token): the driver uses it too
    env = {**os.environ, "RAY_FAKE_CLUSTER": "1", "AUTOSCALER_UPDATE_INTERVAL_S": "1", "RAY_TMPDIR": ray_dir,
           "RAY_AUTH_MODE": "token"}
    ray = str(Path(sys.executable).with_name("ray"))
    try:
        subprocess.run([ray, "start", "--head", f"--port={gcs}", "--num-cpus=0", "--num-gpus=0",
                        f"--autoscaling-config={tmp_path / 'autoscaling.yaml'}", f"--temp-dir={ray_dir}",
                        f"--node-manager-port={node_manager}", f"--object-manager-port={object_manager}",
                        f"--ray-client-server-port={client}", f"--dashboard-agent-grpc-port={agent_grpc}",
                        f"--dashboard-agent-listen-port={agent_http}", f"--metrics-export-port={metrics}",
                        f"--runtime-env-agent-port={runtime_env}", "--include-dashboard=false", "--disable-usage-stats"],
                       env=env, check=True, capture_output=True, text=True, timeout=180)
        out = subprocess.run([sys.executable, "-c", DRIVER, f"{ip}:{gcs}", str(tmp_path / "tune")], env=env,
                             capture_output=True, text=True, timeout=420)
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
        seen = json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        procs = ours(ray_dir)
        for proc in procs:
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(procs, timeout=20)
    assert seen["before"] == []                          # no worker before any trial waited
    assert seen["errors"] == 0 and seen["used"] and seen["head"] not in seen["used"]  # ran on added workers
    assert seen["after"] == []                           # and the idle workers were removed
