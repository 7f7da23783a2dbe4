"""The support_shift sweep end to end (its --smoke run, shared with tests/test_sweep_scripts.py), its
per-example predictions, and its report's ER per in-/out-of-support shift."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, f1_score

from analysis.claims import compare
from analysis.ingest import load_experiments, load_trials
from analysis.predictions import read_predictions, subset_scores
from analysis.support import support_of, support_table


def test_analysis_and_data_agree_on_which_shift_is_in_support():
    from datasets.shifts.transforms import SHIFTS
    from datasets.shifts.transforms import support_of as data_support_of

    for shift in SHIFTS:
        for p in (None, 0.5, 0.9):
            assert support_of(shift, p) == data_support_of(shift, p)
    assert support_of("tint", 0.7) == "in-support" and support_of("tint", None) == "out-of-support"
    assert support_of("flip", 0.7) == "out-of-support"


def _grid_row(target, shift, er, lo, hi, n=4):
    return {"id_domain": target, "ood_domain": shift, "target": target, "group": f"{target}: synthnet/full",
            "baseline": f"{target}: scratch", "mean_er": er, "er_ci_lo": lo, "er_ci_hi": hi, "n_trials": n}


def test_support_table_names_each_shift_and_claims_follow_the_cis():
    from test_cli_flags import sweep_script

    CLAIMS = sweep_script("support_shift").CLAIMS
    grid = pd.DataFrame([_grid_row("untinted", "flip", 0.05, 0.02, 0.08), _grid_row("untinted", "tint", 0.03, 0.01, 0.05),
                         _grid_row("tint-p0.9", "tint", -0.01, -0.03, 0.01), _grid_row("other", "sketch", 0.1, 0, 0.2)])
    points = pd.DataFrame({"target": ["untinted", "tint-p0.9", "other"], "target_options": [
        json.dumps({"p": None, "shifts": ["tint", "flip"]}), json.dumps({"p": 0.9, "shifts": ["tint"]}),
        json.dumps({"domain": "sketch"})]})
    table = support_table(grid, points)
    assert table[["support", "reference", "shift"]].values.tolist() == [
        ["in-support", "tint p=0.9", "tint"], ["out-of-support", "untinted", "tint"],
        ["out-of-support", "untinted", "flip"]]
    assert compare(CLAIMS, pd.DataFrame(), table)[0].startswith("reproduced")
    assert compare(CLAIMS, pd.DataFrame(), table)[1].startswith("reproduced")
    helped = table.assign(er_ci_lo=np.where(table["support"] == "in-support", 0.01, table["er_ci_lo"]))
    assert compare(CLAIMS, pd.DataFrame(), helped)[1].startswith("NOT reproduced")
    hurt = table.assign(er_ci_lo=np.where(table["shift"] == "flip", -0.01, table["er_ci_lo"]))
    assert compare(CLAIMS, pd.DataFrame(), hurt)[0].startswith("NOT reproduced")
    assert compare(CLAIMS, pd.DataFrame(), table.assign(n_trials=2))[0].startswith("not checked")


def test_predictions_file_round_trips_locally_and_through_a_uri(tmp_path):
    import pyarrow.fs

    from engine.predictions import PredictionLog, read_log, write_log

    rng = np.random.default_rng(0)
    truth = {"id_test": rng.integers(0, 5, 30), "test": rng.integers(0, 5, 40)}
    log = PredictionLog(num_classes=5)
    preds = {e: {s: (y, rng.integers(0, 5, len(y))) for s, y in truth.items()} for e in (1, 2, 3)}
    for epoch in (1, 2, 3):
        log.add(epoch, preds[epoch])
    fs = pyarrow.fs.LocalFileSystem()
    write_log(log, fs, str(tmp_path / "trial"))
    for where in (tmp_path / "trial", f"file://{tmp_path / 'trial'}"):
        epochs, splits = read_predictions(where)
        assert epochs.tolist() == [1, 2, 3]
        for s, y in truth.items():
            assert np.array_equal(splits[s][0], y)
            assert np.array_equal(splits[s][1], np.stack([preds[e][s][1] for e in (1, 2, 3)]))
    assert read_log(fs, str(tmp_path / "trial"), 5, up_to_epoch=2).epochs == [1, 2]  # a resume keeps epochs <= 2
    rows = np.arange(0, 40, 3)
    scores = subset_scores(tmp_path / "trial", "test", rows, "part")
    y = truth["test"][rows]
    assert scores["part_acc"].tolist() == pytest.approx([accuracy_score(y, preds[e]["test"][1][rows]) for e in (1, 2, 3)])
    assert scores["part_f1"].tolist() == pytest.approx([f1_score(y, preds[e]["test"][1][rows], average="macro",
                                                                 labels=np.unique(y)) for e in (1, 2, 3)])
    with pytest.raises(FileNotFoundError, match="predictions.npz does not exist"):
        read_predictions(tmp_path / "nothing")


@pytest.mark.slow
def test_support_shift_smoke_reports_every_shifted_set_and_stores_predictions(smoke_runs):
    out, sweep = smoke_runs["support_shift"]
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    trials = load_trials([sweep])
    assert set(trials["status"]) == {"finished"} and set(trials["target"]) == {"untinted", "tint-p0.9", "synthcam"}
    rows = load_experiments([sweep])
    untinted = rows[rows["target"] == "untinted"]
    for name in ("id", "ood", "ood_tint", "ood_flip"):  # documented metric names (README: rows of support_shift)
        assert untinted[[f"{name}_acc", f"{name}_f1"]].notna().all().all(), name
    tinted = rows[rows["target"] == "tint-p0.9"]
    assert tinted[["ood_tint_acc", "ood_tint_f1"]].notna().all().all()
    for _, trial in trials.iterrows():  # predictions of every epoch reproduce the reported scores
        epochs, splits = read_predictions(trial["trial_dir"])
        assert epochs.tolist() == [1, 2]
        reported = rows[rows["trial_id"] == trial["trial_id"]].sort_values("epoch")
        y_true, y_pred = splits["test"]
        shifts = json.loads(trial["target_options"] or "{}").get("shifts", ["ood"])  # synthcam: one OOD set
        n = len(y_true) // len(shifts)
        for k, shift in enumerate(shifts):  # the pooled OOD split holds the shifts in order
            part = slice(k * n, (k + 1) * n)
            acc = [accuracy_score(y_true[part], p[part]) for p in y_pred]
            assert reported["ood_acc" if shift == "ood" else f"ood_{shift}_acc"].tolist() == pytest.approx(acc)
        y_true, y_pred = splits["id_test"]
        assert reported["id_f1"].tolist() == pytest.approx(
            [f1_score(y_true, p, average="macro", labels=np.unique(y_true)) for p in y_pred])
    report = sweep / "report"
    support = pd.read_csv(report / "support_er.csv")
    synthetic = support[support["reference"] != "natural: synthcam"]  # the natural parts depend on the training
    assert synthetic[["support", "reference", "shift"]].values.tolist() == [
        ["in-support", "tint p=0.9", "tint"], ["out-of-support", "untinted", "tint"],
        ["out-of-support", "untinted", "flip"]]
    # synthcam's new locations, split by the domain classifier on the pre-trained encoder's features
    natural = support[support["reference"] == "natural: synthcam"]
    features = np.load(sweep / "natural" / "synthcam.features.npz")
    split = pd.read_csv(report / "natural_split_synthcam.csv")
    assert len(split) == len(features["shifted"]) == len(features["thumbnails"])
    assert features["reference"].shape[1] == features["shifted"].shape[1] == 512  # resnet18's penultimate layer
    assert (split["out_of_support"] == (split["ratio"] >= 10)).all()
    counts = [int((~split["out_of_support"]).sum()), int(split["out_of_support"].sum())]
    if not natural.empty:
        assert natural["support"].tolist() == ["in-support", "out-of-support"]
        assert [f" {n} images)" in s for n, s in zip(counts, natural["shift"])] == [True, True]
        assert (report / "natural_split_synthcam.png").stat().st_size > 1000
    else:  # the smoke's 1-epoch encoder may find no or very few out-of-support images: no ER, and a note says so
        assert min(counts) <= 10 and "The split of synthcam" in (report / "report.html").read_text()
    assert (report / "support_er.png").stat().st_size > 1000
    html = (report / "report.html").read_text()
    assert "Effective robustness per shift" in html and "out-of-support" in html
    assert "Effective robustness per shift" in out.stdout
    # the same report from the sweep's URI: predictions and the natural shift's features read remotely
    from analysis.report import write_report

    again = write_report(f"file://{sweep}", out_dir=sweep.parent / "report-by-uri")
    by_uri = pd.read_csv(Path(again) / "support_er.csv")
    pd.testing.assert_frame_equal(by_uri, support)
    untinted_dir = trials.loc[trials["target"] == "untinted", "trial_dir"].iloc[0]
    cell = next(Path(untinted_dir).glob("checkpoint_*/cell.json"))
    described = json.loads(cell.read_text())["target"]  # the shift is recorded in the cell's provenance
    assert described["alpha"] == 0.25 and set(described["support"]) <= {"tint", "flip"}


def test_bad_shift_in_a_spec_fails_before_ray(tmp_path):
    import ray

    from engine import EMBEDDED_RECIPE, SweepSpec, Target
    from engine.runner import RunOptions, run_sweep

    spec = SweepSpec(name="bad_shift", sources=("synthnet",), archs=("resnet18",), recipe=EMBEDDED_RECIPE,
                     targets=(Target("tint-p1.5", "support_shift", {"p": 1.5, "shifts": ["tint"]}),))
    with pytest.raises(ValueError, match=r"p=1.5 is not a probability in \(0, 1\)") as err:
        run_sweep(spec, RunOptions(storage_path=str(tmp_path)))
    assert "\n" not in str(err.value)
    assert not ray.is_initialized() and not list(tmp_path.iterdir())


def test_support_bar_chart_draws_each_value_over_its_own_label(tmp_path, monkeypatch):
    """Rows arrive with a natural in-support part after out-of-support shifts: each bar keeps its value."""
    from analysis.support import support_bar_plot

    table = pd.DataFrame([_grid_row("untinted", "flip", 0.05, 0.02, 0.08),
                          _grid_row("tint-p0.9", "tint", -0.01, -0.03, 0.01),
                          _grid_row("synthcam", "part", 0.03, 0.01, 0.05)])
    table["support"] = ["out-of-support", "in-support", "in-support"]
    table["reference"] = ["untinted", "tint p=0.9", "natural: synthcam"]
    table["shift"] = ["flip", "tint", "in part"]
    import matplotlib.figure

    drawn = {}
    real_savefig = matplotlib.figure.Figure.savefig

    def keep(fig, path, *args, **kwargs):
        ax = fig.axes[0]
        labels = [t.get_text().replace("\n", " ") for t in ax.get_xticklabels()]
        heights = [p.get_height() for p in ax.patches if p.get_width() > 0 and p.get_height() != 0]
        drawn.update(zip(labels, heights))
        return real_savefig(fig, path, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", keep)
    support_bar_plot(table, tmp_path / "bars.png")
    assert drawn == pytest.approx({"tint p=0.9 -> tint": -1.0, "natural: synthcam -> in part": 3.0,
                                   "untinted -> flip": 5.0})
