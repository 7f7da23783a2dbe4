"""The density-ratio split of a natural shift, on constructed cases whose answer is known."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from analysis.support_split import fit_temperature, log_loss, out_of_fold_logits, split_shift


def test_split_of_two_gaussians_puts_the_non_overlapping_part_out_of_support():
    # reference N(0, 1), shifted N(3, 1), equal sizes: the true ratio is exp(3x - 4.5), and
    # r >= 1/0.1 exactly when x >= (ln 10 + 4.5) / 3; P(N(3, 1) above that) is the expected fraction.
    rng = np.random.default_rng(0)
    n = 3000
    reference = np.c_[rng.normal(0, 1, n), rng.normal(0, 1, n)]   # a second, uninformative feature
    shifted = np.c_[rng.normal(3, 1, n), rng.normal(0, 1, n)]
    split = split_shift(reference, shifted, epsilon=0.1)
    threshold = (np.log(10) + 4.5) / 3
    expected = stats.norm.sf(threshold, loc=3)                       # 0.768
    assert split.out_fraction == pytest.approx(expected, abs=0.03)
    truly_out = shifted[:, 0] >= threshold
    assert np.mean(split.out_of_support == truly_out) > 0.95
    assert split.out_of_support[shifted[:, 0] > 4].all() and not split.out_of_support[shifted[:, 0] < 1].any()


def test_temperature_calibration_lowers_the_held_out_log_loss():
    # few examples, many noise features and almost no regularisation: overconfident out-of-fold logits
    rng = np.random.default_rng(1)
    n, d = 300, 60
    labels = np.r_[np.zeros(n), np.ones(n)].astype(int)
    features = rng.normal(0, 1, (2 * n, d))
    features[:, 0] += 0.8 * labels
    logits = out_of_fold_logits(features, labels, C=100.0)
    order = rng.permutation(2 * n)
    fit, held_out = order[:n], order[n:]
    temperature = fit_temperature(logits[fit], labels[fit])
    assert temperature > 1  # the raw logits were overconfident
    assert log_loss(logits[held_out], labels[held_out], temperature) < log_loss(logits[held_out], labels[held_out])


def test_fitted_temperature_recovers_a_known_scale():
    # labels drawn from sigmoid(z); the logits handed over are 3 z: the best temperature is 3
    rng = np.random.default_rng(2)
    z = rng.normal(0, 2, 20000)
    labels = (rng.random(len(z)) < 1 / (1 + np.exp(-z))).astype(int)
    assert fit_temperature(3 * z, labels) == pytest.approx(3, rel=0.05)


def test_epsilon_outside_zero_one_is_refused():
    with pytest.raises(ValueError, match="epsilon=1.5 must be in"):
        split_shift(np.zeros((20, 2)), np.ones((20, 2)), epsilon=1.5)


def test_split_command_splits_two_folders_of_images(tmp_path):
    """A user's own shift: the shifted folder holds images like the reference's and a new kind (flat grey
    squares); the new kind is out-of-support, the rest mostly not."""
    import pandas as pd
    import torch
    from PIL import Image

    from conftest import run_sweep_script
    from datasets import get_source
    from engine.archs import build_model

    renders = get_source("synthnet", num_classes=5, images_per_class=30, val_per_class=6).render("train", 32)
    (tmp_path / "ref").mkdir()
    for i, image in enumerate(renders[:100]):
        Image.fromarray(image).save(tmp_path / "ref" / f"{i:03d}.png")
    (tmp_path / "shift" / "old").mkdir(parents=True)
    (tmp_path / "shift" / "new").mkdir()
    for i, image in enumerate(renders[100:150]):
        Image.fromarray(image).save(tmp_path / "shift" / "old" / f"{i:03d}.png")
    for i in range(50):
        Image.fromarray(np.full((32, 32, 3), 100 + 2 * i, dtype=np.uint8)).save(tmp_path / "shift" / "new" / f"{i:03d}.png")
    torch.manual_seed(0)
    torch.save(build_model("resnet18", 10, 32).state_dict(), tmp_path / "encoder.pt")
    out = run_sweep_script("support_shift.py", "split", "--reference", str(tmp_path / "ref"), "--shifted",
                           str(tmp_path / "shift"), "--encoder", "resnet18", "--weights", str(tmp_path / "encoder.pt"),
                           "--resolution", "32", "--out", str(tmp_path / "mine"), timeout=300)
    assert out.returncode == 0, out.stderr
    split = pd.read_csv(tmp_path / "mine.split.csv")
    assert len(split) == 100 and split["file"].str.startswith("new/").sum() == 50
    new = split["file"].str.startswith("new/")
    # a random (untrained) encoder, so the split is noisy: the new kind mostly out, the rest mostly in
    assert split.loc[new, "out_of_support"].mean() > 0.8
    assert split.loc[~new, "out_of_support"].mean() < 0.4
    assert (split["out_of_support"] == (split["ratio"] >= 10)).all()
    assert "of 100 shifted images are out-of-support" in out.stdout

    bad = run_sweep_script("support_shift.py", "split", "--reference", str(tmp_path / "nowhere"), "--shifted",
                           str(tmp_path / "shift"), "--encoder", "resnet18", "--weights", str(tmp_path / "encoder.pt"),
                           timeout=120)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [f"error: {tmp_path / 'nowhere'}: no such directory"]


def test_er_on_each_part_of_a_split_natural_shift_matches_a_hand_fit(tmp_path):
    """Three scratch and three pre-trained trials with stored predictions; each part's ER recomputed here
    with scipy's linregress on probit-transformed accuracies."""
    import json

    import pandas as pd
    import pyarrow.fs

    from analysis.natural_split import natural_split_er
    from engine.predictions import PredictionLog, write_log

    rng = np.random.default_rng(3)
    reference = rng.normal(0, 1, (300, 2))
    shifted = np.r_[rng.normal(0, 1, (150, 2)), rng.normal(0, 1, (150, 2)) + [6, 0]]  # the second half is new
    np.savez(tmp_path / "t.features.npz", reference=reference, shifted=shifted, rows=np.arange(300),
             thumbnails=np.zeros((300, 32, 32, 3), np.uint8),
             meta=np.asarray(json.dumps({"target": "t", "shifted_split": "test", "shift_name": "t test",
                                         "encoder": "resnet18"})))
    y_true = rng.integers(0, 5, 300)
    rows, trials = [], []
    for k, group in enumerate(["t: scratch"] * 3 + ["t: synthnet/full"] * 3):
        log, trial_dir = PredictionLog(5), tmp_path / f"trial{k}"
        for epoch in range(1, 5):
            right_in, right_out = 0.3 + 0.1 * epoch + 0.02 * k, 0.2 + 0.08 * epoch + (0.1 if k >= 3 else 0)
            correct = np.r_[rng.random(150) < right_in, rng.random(150) < right_out]
            y_pred = np.where(correct, y_true, (y_true + 1) % 5)
            log.add(epoch, {"test": (y_true, y_pred)})
            rows.append({"trial_id": f"t{k}", "epoch": epoch, "group": group, "target": "t", "status": "finished",
                         "id_acc": 0.4 + 0.1 * epoch + 0.01 * k})
        write_log(log, pyarrow.fs.LocalFileSystem(), str(trial_dir))
        trials.append({"trial_id": f"t{k}", "trial_dir": str(trial_dir)})
    rows, trials = pd.DataFrame(rows), pd.DataFrame(trials)
    table, split, _ = natural_split_er(tmp_path / "t.features.npz", rows, trials, metric="acc")
    truth = np.r_[np.zeros(150, bool), np.ones(150, bool)]
    assert np.mean(split.out_of_support == truth) > 0.85  # the split itself is tested above
    for kind, part in (("in-support", ~split.out_of_support), ("out-of-support", split.out_of_support)):
        acc = {}
        for k in range(6):
            preds = np.load(tmp_path / f"trial{k}" / "predictions.npz")["test.y_pred"]
            acc[k] = [(p[part] == y_true[part]).mean() for p in preds]
        ident = rows.set_index(["trial_id", "epoch"])["id_acc"]
        x = lambda ks: stats.norm.ppf([ident[(f"t{k}", e)] for k in ks for e in range(1, 5)])  # noqa: E731
        y = lambda ks: np.array([a for k in ks for a in acc[k]])  # noqa: E731
        fit = stats.linregress(x(range(3)), stats.norm.ppf(y(range(3))))
        expected = np.mean(y(range(3, 6)) - stats.norm.cdf(fit.intercept + fit.slope * x(range(3, 6))))
        got = table.loc[table["support"] == kind, "mean_er"].item()
        assert got == pytest.approx(expected, abs=1e-9), kind
