"""`python -m engine.cleanup`: lists (dry run) then removes what no sweep references."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import ROOT, this_checkout_env
from engine.inputs import PretrainInputs
from engine.recipes import SMOKE_RECIPE
from engine.spec import SweepSpec, cells


def trial_state(config: dict) -> str:
    return json.dumps({"config": config, "status": "TERMINATED", "relative_logdir": f"cell-{config['cell_id']}"})


def make_storage(root: Path) -> dict[str, Path]:
    """A storage root with one live sweep (a scratch and a quantity cell), an old one moved aside by
    --fresh, a used and an orphaned pre-trained model, and a cache with a used and an unused .beton."""
    spec = SweepSpec(name="s", intervention="quantity", values=(100,), sources=("synthnet",), archs=("resnet18",),
                     recipe=SMOKE_RECIPE, baselines=("scratch",))
    grid = cells(spec)
    quantity = next(c for c in grid if c["intervention"] == "quantity")
    used_key = PretrainInputs.from_config(quantity).key
    storage, cache = root / "storage", root / "cache"
    exp = storage / "s" / "exp-000"
    exp.mkdir(parents=True)
    (exp / "experiment_state-2026-01-01_00-00-00.json").write_text(
        json.dumps({"trial_data": [[trial_state(c), "{}"] for c in grid]}))
    ckpt = exp / f"cell-{quantity['cell_id']}" / "checkpoint_000001"
    ckpt.mkdir(parents=True)
    (ckpt / "cell.json").write_text(json.dumps({"provenance": {"data_files": {"train": "t-train.beton"}}}))
    paths = {"old": storage / "s.old-20260101-000000", "used": storage / "pretrained" / used_key,
             "orphan": storage / "pretrained" / ("0" * len(used_key)), "beton_trial": cache / "betons" / "t-train.beton",
             "beton_model": cache / "betons" / "p-train.beton", "beton_unused": cache / "betons" / "x-train.beton"}
    (paths["old"] / "exp-000").mkdir(parents=True)
    (paths["old"] / "exp-000" / "big").write_bytes(b"\0" * 3000)
    for key in ("used", "orphan"):
        paths[key].mkdir(parents=True)
        (paths[key] / "model.pt").write_bytes(b"\0" * 1000)
        (paths[key] / "meta.json").write_text(json.dumps({"data_files": {"train": "p-train.beton"}}))
    for key in ("beton_trial", "beton_model", "beton_unused"):
        paths[key].parent.mkdir(parents=True, exist_ok=True)
        paths[key].write_bytes(b"\0" * 500)
    return {**paths, "storage": storage, "cache": cache}


def run(paths: dict, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine.cleanup", "--storage-path", str(paths["storage"]),
                           "--cache", str(paths["cache"]), *extra], cwd=ROOT, env=this_checkout_env(),
                          capture_output=True, text=True, timeout=120)


def test_dry_run_lists_then_delete_removes_only_the_unreferenced(tmp_path):
    paths = make_storage(tmp_path)
    out = run(paths)
    assert out.returncode == 0, out.stderr
    listed = [line for line in out.stdout.splitlines() if line.startswith("would free ") and "  (" in line]
    # the orphaned model's pre-training data (p-train) is still named by the used model: it stays
    expected = {paths["old"]: 3000, paths["orphan"]: 1000 + len(json.dumps({"data_files": {"train": "p-train.beton"}})),
                paths["beton_unused"]: 500}
    assert {Path(line.split("  (")[0].rsplit("  ", 1)[1]) for line in listed} == set(expected)
    total = sum(expected.values())
    assert out.stdout.splitlines()[-1] == f"would free {total / 2**20:.1f} MiB in 3 items; add --delete to remove them"
    assert all(p.exists() for k, p in paths.items())  # a dry run removes nothing

    out = run(paths, "--delete")
    assert out.returncode == 0, out.stderr
    assert not any(paths[k].exists() for k in ("old", "orphan", "beton_unused"))
    assert all(paths[k].exists() for k in ("used", "beton_trial", "beton_model", "storage"))
    assert (paths["storage"] / "s" / "exp-000").is_dir()
    again = run(paths)
    assert again.stdout.splitlines()[-1].startswith("would free 0.0 MiB in 0 items")


def test_unreadable_config_keeps_every_model(tmp_path):
    paths = make_storage(tmp_path)
    (paths["storage"] / "s" / "exp-000" / "experiment_state-2026-01-02_00-00-00.json").write_text(
        json.dumps({"trial_data": [[json.dumps({"config": {"intervention": "quantity"}}), "{}"]]}))
    out = run(paths)
    assert "kept every pre-trained model" in out.stdout
    assert str(paths["orphan"]) not in out.stdout and str(paths["old"]) in out.stdout
