"""A user's own shift: two folders of images split by `support_shift.py split`, then evaluated by a
sweep (`shift_folders` target) on the whole shifted set and on each of its two parts."""
from __future__ import annotations

import argparse
import csv
import importlib.util
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import ROOT, run_sweep_script
from datasets import SourceError, get_source

CLASSES = ("c0", "c1", "c2")
REFERENCE_PER_CLASS, SHIFTED_PER_CLASS, FLAT_PER_CLASS = 40, 10, 20


@pytest.fixture(scope="module")
def user_shift(tmp_path_factory) -> dict[str, Path]:
    """Reference: 3 class folders x 40 rendered PNGs. Shifted: the same classes, 10 other renders (JPEG)
    and 20 flat grey squares (PNG, a new kind of image) each. Split with a random resnet18 at 32 px."""
    import torch
    from PIL import Image

    from engine.archs import build_model

    root = tmp_path_factory.mktemp("user_shift")
    renders = get_source("synthnet", num_classes=3, images_per_class=REFERENCE_PER_CLASS,
                         val_per_class=SHIFTED_PER_CLASS)
    for split, folder, ext in (("train", "reference", "png"), ("val", "shifted", "jpg")):
        for i, (image, label) in enumerate(zip(renders.render(split, 32), renders.labels(split))):
            (root / folder / CLASSES[label]).mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(root / folder / CLASSES[label] / f"{i:03d}.{ext}")
    for c in CLASSES:
        for i in range(FLAT_PER_CLASS):
            Image.fromarray(np.full((32, 32, 3), 100 + 4 * i, np.uint8)).save(root / "shifted" / c / f"flat{i:02d}.png")
    torch.manual_seed(0)
    torch.save(build_model("resnet18", 10, 32).state_dict(), root / "encoder.pt")
    out = run_sweep_script("support_shift.py", "split", "--reference", str(root / "reference"), "--shifted",
                           str(root / "shifted"), "--encoder", "resnet18", "--weights", str(root / "encoder.pt"),
                           "--resolution", "32", "--out", str(root / "mine"), timeout=300)
    assert out.returncode == 0, out.stderr
    return {"root": root, "reference": root / "reference", "shifted": root / "shifted", "split": root / "mine.split.csv"}


def _marked(split_file: Path) -> dict[bool, set[str]]:
    """The files the split file marks out of support (True) and in support (False), read with the csv module."""
    with open(split_file, newline="") as f:
        rows = list(csv.DictReader(f))
    return {flag: {r["file"] for r in rows if r["out_of_support"] == str(flag)} for flag in (True, False)}


def test_evaluation_sets_are_the_whole_shifted_set_and_exactly_the_parts_the_split_file_marks(user_shift):
    marked = _marked(user_shift["split"])
    n_shifted = len(CLASSES) * (SHIFTED_PER_CLASS + FLAT_PER_CLASS)               # 90
    assert len(marked[True]) + len(marked[False]) == n_shifted
    assert marked[True] and marked[False]  # the data's premise: the split finds both parts
    src = get_source("shift_folders", reference=str(user_shift["reference"]), shifted=str(user_shift["shifted"]),
                     split=str(user_shift["split"]))
    sets = src.evaluation_sets()
    assert set(sets) == {"id", "ood", "ood_in_support", "ood_out_of_support"}
    assert sets["id"] == ("id_test", None) and sets["ood"] == ("test", None)
    test_files = [src.scans["test"].files[i] for i in src.kept("test")]
    assert len(test_files) == len(src.labels("test")) == n_shifted
    for name, flag in (("ood_in_support", False), ("ood_out_of_support", True)):
        split, rows = sets[name]
        assert split == "test"
        assert {test_files[i].removeprefix("shifted/") for i in rows} == marked[flag]
        assert len(rows) == len(marked[flag])
    # labels by class folder name; the held-out reference part: ceil(0.2 x 40) = 8 of each class's 40
    assert [src.classes[y] for y in src.labels("test")] == [f.split("/")[1] for f in test_files]
    held = math.ceil(0.2 * REFERENCE_PER_CLASS)
    assert len(src.labels("id_test")) == len(CLASSES) * held
    assert len(src.labels("train")) == len(CLASSES) * (REFERENCE_PER_CLASS - held)
    assert np.bincount(src.labels("id_test")).tolist() == [held] * len(CLASSES)
    reference = set(src.scans["train"].files) | set(src.scans["id_test"].files)
    assert len(reference) == len(CLASSES) * REFERENCE_PER_CLASS and all(f.startswith("reference/") for f in reference)


def _error(**options) -> str:
    with pytest.raises(SourceError) as err:
        get_source("shift_folders", **options)
    assert "\n" not in str(err.value)
    return str(err.value)


def test_bad_folders_and_stale_splits_are_one_line_errors(user_shift, tmp_path):
    from PIL import Image

    reference, split = str(user_shift["reference"]), str(user_shift["split"])
    shifted = tmp_path / "shifted"
    shutil.copytree(user_shift["shifted"], shifted)
    ok = {"reference": reference, "shifted": str(shifted), "split": split}
    assert "no such directory" in _error(**{**ok, "reference": str(tmp_path / "nowhere")})
    assert "no such file" in _error(**{**ok, "split": str(tmp_path / "nothing.split.csv")})
    assert "changed since" in _error(**ok, split_sha256="0" * 64)

    extra = shifted / "c1" / "extra.png"
    Image.new("RGB", (32, 32)).save(extra)                       # an image the split never saw
    assert "does not list 1 image(s)" in _error(**ok) and "c1/extra.png" in _error(**ok)
    extra.unlink()
    (shifted / "c2" / "flat00.png").unlink()                     # an image the split lists, gone since
    assert "lists 1 file(s) that are not images" in _error(**ok) and "c2/flat00.png" in _error(**ok)
    shutil.copy(user_shift["shifted"] / "c2" / "flat00.png", shifted / "c2" / "flat00.png")

    (shifted / "wolf").mkdir()                                   # a class the reference lacks
    Image.new("RGB", (32, 32)).save(shifted / "wolf" / "w.png")
    message = _error(**ok)
    assert "class folder 'wolf' is not a class of --reference" in message


def test_sweep_flags_come_together_and_bad_folders_stop_before_ray(user_shift, tmp_path):
    script = _script()
    args = argparse.Namespace(data_root=None, reference=str(user_shift["reference"]), shifted=None, split=None)
    with pytest.raises(ValueError, match="--reference, --shifted and --split go together: --shifted, --split missing"):
        script.build(args)
    built = script.build(argparse.Namespace(data_root=None, reference=str(user_shift["reference"]),
                                            shifted=str(user_shift["shifted"]), split=str(user_shift["split"])))
    assert built.name == "support_shift-mine" and [t.name for t in built.targets] == ["mine"]
    assert built.targets[0].options["split_sha256"] and built.baselines == ("scratch", "full")

    wrong = tmp_path / "wrong"
    shutil.copytree(user_shift["shifted"], wrong)
    (wrong / "c0").rename(wrong / "dog")
    out = run_sweep_script("support_shift.py", "--reference", str(user_shift["reference"]), "--shifted", str(wrong),
                           "--split", str(user_shift["split"]), "--storage-path", str(tmp_path / "store"), timeout=300)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        f"error: --shifted {wrong}: class folder 'dog' is not a class of --reference {user_shift['reference']}; "
        "remove it from the shifted folder or add it to the reference"]
    assert not (tmp_path / "store").exists() or not any((tmp_path / "store").iterdir())


def test_support_table_names_the_two_parts_of_a_split_shift():
    import json

    from analysis.support import support_table

    grid = pd.DataFrame([{"id_domain": "mine", "ood_domain": d, "target": "mine", "group": "mine: synthnet/full",
                          "baseline": "mine: scratch", "mean_er": er, "er_ci_lo": er - 0.01, "er_ci_hi": er + 0.01,
                          "n_trials": 3} for d, er in (("out_of_support", 0.04), ("in_support", -0.01))])
    options = json.dumps({"reference": "/d/reference", "shifted": "/d/sketch", "split": "/d/mine.split.csv"})
    table = support_table(grid, pd.DataFrame({"target": ["mine"], "target_options": [options]}))
    assert table[["support", "reference", "shift", "mean_er"]].values.tolist() == [
        ["in-support", "natural: mine", "sketch (in-support part)", -0.01],
        ["out-of-support", "natural: mine", "sketch (out-of-support part)", 0.04]]


def _script():
    spec = importlib.util.spec_from_file_location("support_shift_script", ROOT / "sweeps" / "support_shift.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


def _split_shift_spec(reference: Path, shifted: Path, split: Path):
    return _script().build(argparse.Namespace(data_root=None, reference=str(reference), shifted=str(shifted),
                                              split=str(split)))


def _drawn_grid(monkeypatch, draw) -> dict[str, list[np.ndarray]]:
    """The images `draw()` puts in each row of a split figure's grid, by the row's label."""
    import matplotlib.figure

    rows: dict[str, list[np.ndarray]] = {}
    real_savefig = matplotlib.figure.Figure.savefig

    def keep(fig, path, *args, **kwargs):
        label = None
        for ax in fig.axes[1:] if str(path).endswith(".png") else ():  # the same figure is saved as PDF too  # the first axes holds the ER bars
            label = ax.get_ylabel() or label
            rows.setdefault(label, []).append(np.asarray(ax.get_images()[0].get_array()))
        return real_savefig(fig, path, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", keep)
    draw()
    return rows


def test_the_split_figure_shows_the_images_the_split_file_ranks_most_in_and_out_of_support(user_shift, tmp_path,
                                                                                          monkeypatch, capsys):
    """The sweep copies the split file and the thumbnails into its directory; the report's grid shows the
    shifted images of the lowest and highest ratios of the split file (read here with the csv module, the
    images read from the shifted folder); without the features file it says so in one line."""
    import json

    from PIL import Image

    from analysis.figures import Drawn, _natural_split
    from analysis.user_split import read_user_splits, user_figure
    from engine.split_files import write_user_splits

    sweep = tmp_path / "sweep"
    spec = _split_shift_spec(user_shift["reference"], user_shift["shifted"], user_shift["split"])
    write_user_splits(spec, sweep)
    assert (sweep / "natural" / "mine.split.csv").read_bytes() == user_shift["split"].read_bytes()
    with open(user_shift["split"], newline="") as f:
        listed = [(float(r["ratio"]), k, r["file"]) for k, r in enumerate(csv.DictReader(f))]
    lowest = [name for _, _, name in sorted(listed)[:8]]
    highest = [name for _, _, name in sorted(listed, key=lambda t: (-t[0], t[1]))[:8]]
    n_out = sum(r >= 10 for r, _, _ in listed)  # out_of_support is ratio >= 1/epsilon (tested in test_support_split)

    points = pd.DataFrame({"target": ["mine"], "target_options": [json.dumps(spec.targets[0].options)]})
    splits, notes = read_user_splits([sweep], points)
    assert notes == [] and splits["mine"].sizes() == {("mine", "in_support"): len(listed) - n_out,
                                                      ("mine", "out_of_support"): n_out}
    support = pd.DataFrame([{"support": kind, "shift": f"shifted ({kind} part)", "reference": "natural: mine",
                             "target": "mine", "group": "mine: synthnet/full", "baseline": "mine: scratch",
                             "mean_er": er, "er_ci_lo": er - 0.02, "er_ci_hi": er + 0.02, "n_trials": 3}
                            for kind, er in (("out-of-support", 0.03), ("in-support", -0.01))])
    figure = user_figure(splits["mine"], support)
    assert figure.table["support"].tolist() == ["in-support", "out-of-support"]
    drawn = Drawn()
    grid = _drawn_grid(monkeypatch, lambda: _natural_split(drawn, tmp_path, figure, "scratch", "macro-F1", 100))
    image = lambda name: np.asarray(Image.open(user_shift["shifted"] / name).convert("RGB"))  # noqa: E731
    assert [g.shape for g in grid["most in-support"]] == [(32, 32, 3)] * 8
    for label, names in (("most in-support", lowest), ("most out-of-support", highest)):
        assert all(np.array_equal(got, image(name)) for got, name in zip(grid[label], names, strict=True)), label
    assert (tmp_path / "natural_split_mine.png").stat().st_size > 1000 and (tmp_path / "natural_split_mine.pdf").exists()
    assert drawn.skipped == [] and drawn.figures[0][0] == "natural_split_mine"

    # the same split file without its features file beside it: no thumbnails, one line, and the ER figure still
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(user_shift["split"], alone / "mine.split.csv")
    capsys.readouterr()
    write_user_splits(_split_shift_spec(user_shift["reference"], user_shift["shifted"], alone / "mine.split.csv"),
                      sweep)
    said = capsys.readouterr().out.strip().splitlines()
    assert said == [f"mine: no image grid in the report: {alone / 'mine.features.npz'} is missing beside the split "
                    "file (support_shift.py split writes both)"]
    assert not (sweep / "natural" / "mine.thumbnails.npz").exists()  # the earlier run's copy is gone
    splits, _ = read_user_splits([sweep], points)
    drawn = Drawn()
    grid = _drawn_grid(monkeypatch, lambda: _natural_split(drawn, tmp_path / "alone", user_figure(splits["mine"],
                                                                                                 support),
                                                           "scratch", "macro-F1", 100))
    assert grid == {} and (tmp_path / "alone" / "natural_split_mine.png").exists()
    assert len(drawn.skipped) == 1 and "has no image grid" in drawn.skipped[0] and "\n" not in drawn.skipped[0]


@pytest.mark.slow
def test_a_sweep_on_a_split_shift_reports_each_part(user_shift, smoke_runs, tmp_path):
    from analysis.ingest import load_experiments, load_trials
    from analysis.predictions import read_predictions

    out = run_sweep_script("support_shift.py", "--reference", str(user_shift["reference"]), "--shifted",
                           str(user_shift["shifted"]), "--split", str(user_shift["split"]), "--smoke",
                           "--storage-path", str(smoke_runs["storage"]), timeout=600)  # reuses their pre-trained synthnet
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    sweep = smoke_runs["storage"] / "support_shift-mine-smoke"
    rows, trials = load_experiments([sweep]), load_trials([sweep])
    assert set(trials["status"]) == {"finished"} and set(trials["intervention"]) == {"scratch", "full"}
    # each part's score, recomputed from the stored predictions of the whole shifted split and the split file's
    # marks (its rows are in the split's order: class folders, then file names, sorted)
    split = pd.read_csv(user_shift["split"])
    assert split["file"].tolist() == sorted(split["file"])
    for _, trial in trials.iterrows():
        epochs, predictions = read_predictions(trial["trial_dir"])
        y_true, y_pred = predictions["test"]
        assert len(y_true) == len(split)
        reported = rows[rows["trial_id"] == trial["trial_id"]].sort_values("epoch")
        for name, mask in (("ood_in_support", ~split["out_of_support"]), ("ood_out_of_support", split["out_of_support"])):
            mask = mask.to_numpy()
            assert reported[f"{name}_acc"].tolist() == pytest.approx([np.mean(p[mask] == y_true[mask]) for p in y_pred])
        assert reported["ood_acc"].tolist() == pytest.approx([np.mean(p == y_true) for p in y_pred])
    support = pd.read_csv(sweep / "report" / "support_er.csv")
    marked = _marked(user_shift["split"])
    assert support[["support", "reference", "shift"]].values.tolist() == [
        ["in-support", "natural: mine", f"shifted (in-support part, {len(marked[False])} images)"],
        ["out-of-support", "natural: mine", f"shifted (out-of-support part, {len(marked[True])} images)"]]
    assert support["mean_er"].notna().all()
    assert f"natural: mine -> shifted (out-of-support part, {len(marked[True])} images)" in out.stdout
    # the split figure, its grid drawn from the thumbnails the sweep copied (what it shows: tested above)
    assert (sweep / "natural" / "mine.thumbnails.npz").exists()
    for suffix in ("png", "pdf"):
        assert (sweep / "report" / f"natural_split_mine.{suffix}").stat().st_size > 1000
    assert "In-support and out-of-support parts of mine" in (sweep / "report" / "report.html").read_text()
    # without the thumbnails (no features file beside the split file): one line says so, the rest is written
    from analysis.report import write_report

    (sweep / "natural" / "mine.thumbnails.npz").unlink()
    again = write_report([sweep], out_dir=tmp_path / "again")
    html = (again / "report.html").read_text()
    assert html.count("has no image grid") == 1 and "In-support and out-of-support parts of mine" in html
    pd.testing.assert_frame_equal(pd.read_csv(again / "support_er.csv"), support)
    assert (again / "natural_split_mine.png").exists() and (again / "support_er.png").exists()
