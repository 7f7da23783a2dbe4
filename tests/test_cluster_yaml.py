"""cluster.yaml is a valid Ray 2.60 cluster-launcher config with the shape DESIGN.md asks for.

Validation runs offline, as `ray up` does before it talks to AWS: prepare_config (merge with
the AWS defaults, fill per-type worker bounds) then validate_config (ray-schema.json plus
Ray's own cross-field checks). Provider bootstrap (key pairs, subnets, IAM) needs AWS
credentials and is not exercised here.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
CLUSTER_YAML = REPO / "cluster.yaml"
SYSTEM_PACKAGES = ("libopencv-dev", "libturbojpeg0-dev", "pkg-config", "wordnet-base", "wordnet-sense-index")


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    return yaml.safe_load(CLUSTER_YAML.read_text())


@pytest.fixture(scope="module")
def prepared(raw: dict[str, Any]) -> dict[str, Any]:
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = prepare_config(copy.deepcopy(raw))
    validate_config(config)
    return config


def test_validates_with_ray(prepared: dict[str, Any]) -> None:
    assert prepared["cluster_name"] == "robustness-sweeps"
    provider = prepared["provider"]
    assert provider["type"] == "aws" and provider["region"] == "us-west-2"
    assert provider["cache_stopped_nodes"] is True
    assert not prepared.get("docker")  # no containers: nodes run the venv directly


def test_raw_file_alone_passes_the_schema(raw: dict[str, Any]) -> None:
    # The schema itself (without defaults) must accept what we wrote: catches typos in keys.
    import json

    import jsonschema
    import ray.autoscaler

    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    jsonschema.validate(raw, schema)


def test_cpu_head_without_gpus(prepared: dict[str, Any]) -> None:
    head_type = prepared["head_node_type"]
    head = prepared["available_node_types"][head_type]
    assert head["resources"].get("GPU", 0) == 0 and "GPU" in head["resources"]  # explicit, not autodetected
    assert head["resources"].get("CPU") == 0  # no trial runs on the head
    assert head["max_workers"] == 0
    start = " ".join(prepared["head_start_ray_commands"])
    assert "--num-gpus=0" in start and "--num-cpus=0" in start


def test_gpu_workers_autoscale(prepared: dict[str, Any]) -> None:
    head_type = prepared["head_node_type"]
    gpu_types = {
        name: t for name, t in prepared["available_node_types"].items()
        if name != head_type and t["resources"].get("GPU", 0) >= 1
    }
    assert gpu_types, "no GPU worker type"
    for name, t in gpu_types.items():
        assert t["min_workers"] == 0, name  # nothing runs (or costs) until trials wait
        assert 0 < t["max_workers"] <= prepared["max_workers"], name
        assert t["node_config"]["InstanceType"]
        assert t["node_config"]["InstanceMarketOptions"]["MarketType"] == "spot", name


def test_dashboard_only_on_localhost(raw: dict[str, Any], prepared: dict[str, Any]) -> None:
    start = " ".join(prepared["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in start
    assert "ray start --head --port=6379" in start
    assert "--autoscaling-config=~/ray_bootstrap_config.yaml" in start
    assert "0.0.0.0" not in CLUSTER_YAML.read_text()
    workers = " ".join(prepared["worker_start_ray_commands"])
    assert "ray start --address=$RAY_HEAD_IP:6379" in workers
    assert prepared["worker_start_ray_commands"][0] == prepared["head_start_ray_commands"][0] == "ray stop"


def test_setup_installs_system_packages_project_and_wordnet(raw: dict[str, Any], prepared: dict[str, Any]) -> None:
    setup = raw["setup_commands"]
    apt = [c for c in setup if "apt-get install" in c]
    assert apt and "sudo apt-get update" in apt[0]
    for pkg in SYSTEM_PACKAGES:
        assert re.search(rf"(?<![\w.-]){re.escape(pkg)}(?![\w.-])", apt[0]), pkg
    assert any("python3.11" in c for c in apt)
    assert any("pip install" in c and "-e ~/robustness-sweeps" in c for c in setup)
    assert any("datasets.hierarchy install-wordnet --nltk-data" in c for c in setup)
    # Order matters: packages before pip (FFCV compiles), project before its WordNet command.
    idx = {key: next(i for i, c in enumerate(setup) if key in c)
           for key in ("apt-get install", "-e ~/robustness-sweeps", "install-wordnet")}
    assert idx["apt-get install"] < idx["-e ~/robustness-sweeps"] < idx["install-wordnet"]
    # prepare_config prepends the common setup to both node kinds.
    assert prepared["head_setup_commands"][: len(setup)] == setup
    assert prepared["worker_setup_commands"][: len(setup)] == setup
    assert any("boto3" in c for c in raw["head_setup_commands"])  # the autoscaler calls EC2


def test_system_packages_match_makefile(raw: dict[str, Any]) -> None:
    makefile = REPO / "Makefile"
    m = re.search(r"^SYSTEM_PACKAGES\s*:?=\s*(.+)$", makefile.read_text(), re.M) if makefile.exists() else None
    if not m:
        pytest.skip("Makefile has no SYSTEM_PACKAGES line")
    apt = next(c for c in raw["setup_commands"] if "apt-get install" in c).split()
    assert set(m.group(1).split()) <= set(apt)


def test_project_synced_to_home(raw: dict[str, Any]) -> None:
    assert raw["file_mounts"] == {"~/robustness-sweeps": "."}
    assert ".gitignore" in raw.get("rsync_filter", [])  # keeps .venv and .beton caches local


def test_no_credentials_in_file() -> None:
    text = CLUSTER_YAML.read_text()
    for pattern in (r"AKIA[0-9A-Z]{16}", r"(?i)aws_secret_access_key", r"(?i)aws_access_key_id",
                    r"(?i)ssh_private_key\s*:", r"(?i)password", r"(?i)token\s*:"):
        assert not re.search(pattern, text), pattern
    assert "KeyName" not in yaml.safe_load(text)["available_node_types"]["head.cpu"]["node_config"]


def test_kuberay_sample_matches_the_cluster_shape() -> None:
    job = yaml.safe_load((REPO / "deploy" / "rayjob.yaml").read_text())
    assert job["apiVersion"] == "ray.io/v1" and job["kind"] == "RayJob"
    cluster = job["spec"]["rayClusterSpec"]
    assert cluster["enableInTreeAutoscaling"] is True
    head = cluster["headGroupSpec"]["rayStartParams"]
    assert head["num-cpus"] == "0" and head["num-gpus"] == "0" and head["dashboard-host"] == "127.0.0.1"
    (gpu,) = cluster["workerGroupSpecs"]
    assert gpu["minReplicas"] == 0 < gpu["maxReplicas"]
    container = gpu["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert "--address auto" in job["spec"]["entrypoint"] and "--gpus-per-trial 1" in job["spec"]["entrypoint"]
    assert not re.search(r"(?i)aws_secret|password|token\s*:", (REPO / "deploy" / "rayjob.yaml").read_text())
    dockerfile = (REPO / "deploy" / "Dockerfile").read_text()
    m = re.search(r"^SYSTEM_PACKAGES\s*:?=\s*(.+)$", (REPO / "Makefile").read_text(), re.M)
    assert all(pkg in dockerfile.split() for pkg in m.group(1).split())
    assert "pip install -q -e ." in dockerfile and "install-wordnet" in dockerfile
