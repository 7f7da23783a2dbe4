"""Every sweep script of the papers, run as a user would with `--smoke`: real local Ray, real data
generation, real training, real report. One session fixture (`smoke_runs`, tests/conftest.py) runs
each once (about a minute each), when a test first asks; the tests read what they left on disk."""
from __future__ import annotations

import json
import re
import runpy
from pathlib import Path

import pandas as pd
import pytest

from analysis.ingest import load_experiments, load_trials
from conftest import ROOT, run_sweep_script
from engine.inputs import PretrainInputs

pytestmark = pytest.mark.slow
SCRIPTS = ("data_quantity", "baselines", "label_granularity", "label_semantics", "image_diversity", "data_sources",
           "clip_finetune", "domainnet", "support_shift")
FINDING = re.compile(r"^(\S+: )?\S+ \(.*\): ER [-+]\d+\.\d pp \[[-+]\d+\.\d, [-+]\d+\.\d\] vs ")


def trends(sweep: Path) -> pd.DataFrame:
    return pd.read_csv(sweep / "report" / "trends.csv").set_index("group")


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_script_runs_its_smoke_sweep_and_states_findings_first(smoke_runs, script):
    out, sweep = smoke_runs[script]
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    trials = load_trials([sweep])
    assert len(trials) and set(trials["status"]) == {"finished"}
    for name in ("report.html", "trends.csv", "points.csv", "scatter.png", "er_bars.png"):
        assert (sweep / "report" / name).stat().st_size > 100, name
    after = out.stdout.split(f"report of {sweep}:\n", 1)[1].splitlines()
    assert FINDING.match(after[0]), after[:3]  # the report's first line is a finding
    html = (sweep / "report" / "report.html").read_text()
    assert html.index("<h2>Findings</h2>") < html.index("<h2>Figures</h2>")
    # the paper's findings, each checked against this run (whatever the smoke sizes give)
    assert "Compared with the paper:" in out.stdout and "<h2>Compared with the paper</h2>" in html


def test_data_quantity_has_a_full_baseline_and_shares_it_with_the_baselines_sweep(smoke_runs):
    _, sweep = smoke_runs["data_quantity"]
    assert set(trends(sweep).index) == {"scratch", "synthnet/full", "synthnet/quantity=100", "synthnet/quantity=400"}
    _, baselines = smoke_runs["baselines"]
    full = load_trials([baselines]).query("intervention == 'full'")
    assert len(full) == 1
    config = json.loads((Path(full.iloc[0]["trial_dir"]) / "params.json").read_text())
    key = PretrainInputs.from_config(config).key
    assert (smoke_runs["storage"] / "pretrained" / key / "model.pt").is_file()
    rows = [json.loads(line) for line in (Path(full.iloc[0]["trial_dir"]) / "result.json").read_text().splitlines()]
    assert not [r for r in rows if r.get("phase") == "pretrain"]  # reused from data_quantity: never retrained
    assert [r["epoch"] for r in rows if r.get("phase") == "finetune"] == [1, 2]


def test_a_sweep_reports_together_with_the_baselines_sweep(smoke_runs, tmp_path):
    from analysis.report import write_report

    _, sweep = smoke_runs["data_quantity"]
    _, baselines = smoke_runs["baselines"]
    out = write_report([sweep, baselines], out_dir=tmp_path)
    points = pd.read_csv(out / "points.csv")
    # scratch and full are the same cells in both sweeps: each counts once
    assert points.groupby("cell_id")["trial_id"].nunique().max() == 1
    assert set(points["group"]) == {"scratch", "synthnet/full", "synthnet/quantity=100", "synthnet/quantity=400"}


def test_label_granularity_contracts_labels_and_keeps_images(smoke_runs):
    _, sweep = smoke_runs["label_granularity"]
    table = trends(sweep)
    depth = table.loc["synthnet/depth=2"]
    assert depth["subset_classes"] < table.loc["synthnet/full", "subset_classes"]
    assert depth["subset_images"] == table.loc["synthnet/full", "subset_images"]  # every image kept


def test_label_semantics_says_whether_the_sides_were_balanced(smoke_runs):
    _, sweep = smoke_runs["label_semantics"]
    table = trends(sweep)
    animal, other = table.loc["synthnet/semantics=animal"], table.loc["synthnet/semantics=object"]
    assert animal["subset_images"] == other["subset_images"]  # balanced by default
    assert "balanced to equal image counts" in (sweep / "report" / "report.html").read_text()


def test_image_diversity_runs_both_arms(smoke_runs):
    _, sweep = smoke_runs["image_diversity"]
    table = trends(sweep)
    assert table.loc["synthnet/classes=5", "subset_images"] == table.loc["synthnet/classes=20", "subset_images"] == 100
    assert table.loc["synthnet_breeds/diversity=0.67", "subset_classes"] == 16  # BREEDS superclasses


def test_two_sources_give_two_trends_per_value_and_two_full_baselines(smoke_runs):
    _, sweep = smoke_runs["data_sources"]
    table = trends(sweep)
    assert {"synthnet/quantity=300", "fractaldb/quantity=300", "synthnet/full", "fractaldb/full"} <= set(table.index)
    assert table.loc["fractaldb/full", "source"] == "fractaldb" and table.loc["synthnet/full", "source"] == "synthnet"
    assert (table["trend_origin"] == "fit").all()


def test_clip_cells_pretrain_contrastively_and_fine_tune_like_every_cell(smoke_runs):
    _, sweep = smoke_runs["clip_finetune"]
    assert {"scratch", "synthnet/full", "synthnet/clip"} <= set(trends(sweep).index)
    trials = load_trials([sweep]).set_index("intervention")
    assert trials.loc["clip", "pretrain_objective"] == "clip" and trials.loc["full", "pretrain_objective"] == "supervised"
    assert trials.loc["clip", "pretrain_optimizer"] == "adamw" and trials.loc["clip", "finetune_optimizer"] == "adamw"
    assert load_experiments([sweep])["id_f1"].between(0, 1).all()


def test_domainnet_evaluates_every_other_domain_as_its_own_ood_set(smoke_runs):
    _, sweep = smoke_runs["domainnet"]
    rows = load_experiments([sweep])
    sketch = rows[rows["target"] == "synthdomains-sketch"]
    assert sketch[["ood_infograph_acc", "ood_real_acc", "ood_clipart_acc"]].notna().all().all()
    assert sketch["ood_sketch_acc"].isna().all()  # its own domain is ID
    grid = pd.read_csv(sweep / "report" / "domain_er.csv")
    # a smoke target whose scratch models all score alike has no trend, hence no grid row: infograph must have one
    assert "infograph" in set(grid["id_domain"]) <= {"infograph", "sketch"}
    assert (grid["id_domain"] != grid["ood_domain"]).all()
    assert (sweep / "report" / "domain_er.png").stat().st_size > 10_000
    table = trends(sweep)
    assert {"synthdomains-infograph: scratch", "synthdomains-sketch: synthnet/full",
            "synthdomains-infograph: synthnet/depth=2"} <= set(table.index)
    assert (table["metric"] == "acc").all()  # DomainNet reports accuracy, as the paper plots


def test_label_granularity_dry_run_on_imagenet_lists_the_papers_class_counts(tmp_path):
    """The real 1000 ILSVRC wnids in ImageNet's layout (one image each): depths 2..7 give 5/17/37/85/232."""
    from datasets.hierarchy import imagenet_wnids
    from layouts import write_imagenet

    write_imagenet(tmp_path / "data", wnids=tuple(imagenet_wnids()), train_per_class=1, val_per_class=1, size=16)
    out = run_sweep_script("label_granularity.py", "--data-root", str(tmp_path / "data"), "--dry-run",
                           "--storage-path", str(tmp_path / "runs"), "--archs", "resnet50",
                           env={"SWEEPS_CACHE": str(tmp_path / "cache")}, timeout=300)
    assert out.returncode == 0, out.stderr
    rows = [line.split() for line in out.stdout.splitlines() if re.match(r"^[0-9a-f]{16}\s", line)]
    classes = {(r[2], r[3]): int(r[5]) for r in rows if r[1] == "imagenet"}
    assert {v for (_, value), v in classes.items()} == {5, 17, 37, 85, 232, 1000}
    assert [classes[("depth", str(d))] for d in (2, 4, 5, 6, 7)] == [5, 17, 37, 85, 232]
    assert "missing (not counted in the cost): source inat2017" in out.stdout
    assert "missing (not counted in the cost): target iwildcam" in out.stdout
    assert "GPU-hours" in out.stdout and "A100" in out.stdout and not (tmp_path / "runs").exists()


def test_every_script_says_what_its_embedded_default_scales(capsys, monkeypatch):
    for script in SCRIPTS:  # each script's own __main__ block, in this process (the smoke runs start them)
        path = ROOT / "sweeps" / f"{script}.py"
        monkeypatch.setattr("sys.argv", [str(path), "--help"])
        with pytest.raises(SystemExit) as exit_info:
            runpy.run_path(str(path), run_name="__main__")
        out = capsys.readouterr().out
        assert exit_info.value.code == 0 and "Embedded default:" in out and "--values" in out, script
        assert "reference ImageNet recipe" in out, script


def test_baselines_start_a_full_cell_from_a_torchvision_checkpoint(tmp_path):
    """`--weights` on the embedded default: the full cell loads the file (weights_only) and never pre-trains."""
    import torch

    from engine.archs import build_model

    torch.save(build_model("resnet18", 1000, 224).state_dict(), tmp_path / "resnet18.pth")
    out = run_sweep_script("baselines.py", "--smoke", "--storage-path", str(tmp_path / "runs"), "--no-report",
                           "--weights", f"synthnet:resnet18={tmp_path / 'resnet18.pth'}", timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    trials = load_trials([tmp_path / "runs" / "baselines-smoke"]).set_index("intervention")
    assert trials.loc["full", "pretrain_epochs"] == 0 and isinstance(trials.loc["full", "pretrain_weights"], str)
    meta = json.loads(next((tmp_path / "runs" / "pretrained").glob("*/meta.json")).read_text())
    assert meta["weights"]["file"] == "resnet18.pth" and meta["subset"]["num_classes"] == 1000
    rows = [json.loads(line) for line in (Path(trials.loc["full", "trial_dir"]) / "result.json").read_text().splitlines()]
    assert [r["phase"] for r in rows] == ["finetune", "finetune"]
