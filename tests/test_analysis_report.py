"""End to end: a real (tiny) Ray Tune experiment on disk -> analysis.ingest -> analysis.report.

One Tune run per session (~15 s, ``demo_sweep``; other analysis test modules reuse it) feeds
every test; tests that alter the files work on copies.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.ingest import find_experiments, load_experiments, load_tables, load_trials
from analysis.report import TREND_COLUMNS, add_group_column, group_label, write_report

REPO = Path(__file__).resolve().parents[1]
EPOCHS = 4
# (source, intervention, value) -> probit intercept of the group's true OOD-vs-ID line. Two
# pre-training sources, each with its own `full` baseline, so groups must never mix them.
GROUPS = {
    ("none", "scratch", None): -0.8,
    ("synthnet", "full", None): -0.3,
    ("synthnet", "quantity", 1000): -0.6,
    ("synthnet", "quantity", 25000): -0.45,
    ("inat2017", "full", None): -0.4,
    ("inat2017", "quantity", 1000): -0.7,
}
LABELS = {"scratch", "synthnet/full", "synthnet/quantity=1000", "synthnet/quantity=25000", "inat2017/full",
          "inat2017/quantity=1000"}
ARCHS = ("resnet18", "mobilenet_v3_small", "alexnet")
N_OK = len(GROUPS) * len(ARCHS)


_DEMO: dict = {}


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
    """<storage>/demo/exp-000: 8 finished trials (4 groups x 2 archs) and 1 errored trial."""
    return demo_sweep(tmp_path_factory)


def demo_sweep(tmp_path_factory):
    """The session's demo sweep dir, made by a real local Tune run on first use."""
    if "dir" not in _DEMO:
        _DEMO["dir"] = _run_demo_sweep(tmp_path_factory)
    return _DEMO["dir"]


def _run_demo_sweep(tmp_path_factory):
    ray = pytest.importorskip("ray")
    from ray import tune
    from ray.tune.search import BasicVariantGenerator

    def trainable(config):
        # Defined here so Ray pickles it by value: workers cannot import this test module.
        import zlib

        import numpy as np
        from ray import tune
        from scipy import stats

        key = f"{config['source']}|{config['intervention']}|{config['value']}|{config['arch']}"
        rng = np.random.default_rng(zlib.crc32(key.encode()))
        for epoch in range(1, config["pretrain_epochs"] + 1):
            tune.report({"phase": "pretrain", "epoch": epoch, "train_loss": 2.0 / epoch})
        base = 0.25 + {"resnet18": 0.1, "alexnet": -0.05}.get(config["arch"], 0.0)
        scratch = config["intervention"] == "scratch"
        for epoch in range(1, config["finetune_epochs"] + 1):
            if config["intervention"] == "crash" and epoch == 2:
                raise RuntimeError("simulated crash in epoch 2")
            id_f1 = base + 0.08 * epoch + rng.normal(0, 0.01)
            z = 0.9 * stats.norm.ppf(id_f1) + config["ood_intercept"] + rng.normal(0, 0.03)
            ood_f1 = float(stats.norm.cdf(z))
            tune.report(
                {
                    "phase": "finetune", "epoch": epoch, "id_f1": id_f1, "ood_f1": ood_f1,
                    "id_acc": id_f1 + 0.1, "ood_acc": ood_f1 + 0.1, "train_loss": 1.0 / epoch,
                    "images_per_s": 1000.0, "id_val_f1": id_f1 - 0.01, "ood_val_f1": ood_f1 - 0.01,
                    "subset_images": 0 if scratch else (config["value"] or 50000),
                    "subset_classes": 0 if scratch else 10,
                }
            )

    cells = [{"source": s, "intervention": i, "value": v, "arch": a} for (s, i, v) in GROUPS for a in ARCHS]
    cells.append({"source": "synthnet", "intervention": "crash", "value": 5000, "arch": "resnet18"})
    for cell in cells:
        scratch = cell["intervention"] == "scratch"
        cell.update(
            pretrain_epochs=0 if scratch else 2,
            ood_intercept=GROUPS.get((cell["source"], cell["intervention"], cell["value"]), -0.5),
        )
    # Keys every cell shares; points_to_evaluate fills in the rest, so params.json stays flat.
    space = {"sweep": "demo", "seed": 0, "target": "synthcam", "finetune_epochs": EPOCHS}
    space |= {key: None for key in cells[0]}
    sweep = tmp_path_factory.mktemp("storage") / "demo"
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        tune.Tuner(
            trainable,
            param_space=space,
            tune_config=tune.TuneConfig(
                search_alg=BasicVariantGenerator(points_to_evaluate=cells),
                num_samples=len(cells),
                reuse_actors=True,
            ),
            run_config=tune.RunConfig(storage_path=str(sweep), name="exp-000", verbose=0),
        ).fit()
    finally:
        if started:
            ray.shutdown()
    return sweep


def test_ray_layout_is_what_ingest_expects(sweep_dir):
    exp = sweep_dir / "exp-000"
    assert len(list(exp.glob("experiment_state-*.json"))) == 1
    assert find_experiments([sweep_dir]) == [exp.resolve()]
    assert find_experiments(exp) == [exp.resolve()]
    params = [json.loads(p.read_text()) for p in exp.glob("*/params.json")]
    assert len(params) == N_OK + 1 and all("cell" not in p for p in params)


def test_load_experiments_rows_columns_and_statuses(sweep_dir):
    df = load_experiments([sweep_dir])
    assert len(df) == N_OK * EPOCHS + 1  # the crashed trial reported one epoch
    for col in ("arch", "seed", "value", "source", "intervention", "sweep", "target",
                "trial_id", "status", "experiment", "epoch", "id_f1", "ood_f1", "id_acc",
                "ood_acc", "train_loss", "images_per_s", "id_val_f1", "ood_val_f1"):
        assert col in df.columns, col
    assert "phase" not in df.columns and "timestamp" not in df.columns
    assert df["value"].dtype == object
    values = set(df["value"].map(repr))
    assert values == {"None", "1000", "25000", "5000"}  # ints stay ints, null stays None
    assert df.groupby("trial_id")["epoch"].apply(list).map(len).max() == EPOCHS
    assert sorted(df["epoch"].unique()) == list(range(1, EPOCHS + 1))  # pretrain rows dropped
    status = df.groupby("trial_id")["status"].first().value_counts().to_dict()
    assert status == {"finished": N_OK, "errored": 1}
    crashed = df[df["intervention"] == "crash"]
    assert len(crashed) == 1 and crashed["status"].iloc[0] == "errored"
    assert df["id_f1"].between(0, 1).all() and df["ood_f1"].between(0, 1).all()


def test_load_trials_counts_every_trial(sweep_dir):
    trials = load_trials(sweep_dir)
    assert len(trials) == N_OK + 1 and trials["trial_id"].is_unique
    crash = trials[trials["intervention"] == "crash"].iloc[0]
    assert crash["status"] == "errored" and crash["epochs_done"] == 1
    assert "simulated crash" in crash["error"]
    assert (trials.loc[trials["status"] == "finished", "epochs_done"] == EPOCHS).all()


def copy_experiment(sweep_dir, dest):
    return Path(shutil.copytree(sweep_dir / "exp-000", dest))


def newest_state(exp):
    return max(exp.glob("experiment_state-*.json"))


def edit_state(exp, edit):
    """Rewrite the newest state file through ``edit(list of [trial, meta] dicts)``."""
    path = newest_state(exp)
    data = json.loads(path.read_text())
    pairs = [[json.loads(t), json.loads(m)] for t, m in data["trial_data"]]
    pairs = edit(pairs)
    data["trial_data"] = [[json.dumps(t), json.dumps(m)] for t, m in pairs]
    path.write_text(json.dumps(data))


def test_nested_sweep_dirs_and_old_dirs(sweep_dir, tmp_path):
    sweep = tmp_path / "demo"
    copy_experiment(sweep_dir, sweep / "exp-000")
    copy_experiment(sweep_dir, sweep / "exp-001")
    old = copy_experiment(sweep_dir, tmp_path / "demo" / "demo.old-20240101-000000" / "exp-000")
    (sweep / "report").mkdir()  # an earlier report is not an experiment
    exps = find_experiments(sweep)
    assert [e.name for e in exps] == ["exp-000", "exp-001"]
    df = load_experiments([sweep])
    assert len(df) == 2 * (N_OK * EPOCHS + 1) and df["experiment"].nunique() == 2
    # Passing the same experiment twice reads it once; an .old- dir passed explicitly is read.
    assert len(load_experiments([sweep, sweep / "exp-000"])) == len(df)
    assert len(load_experiments([old])) == N_OK * EPOCHS + 1


def test_repeated_epoch_keeps_the_last_row(sweep_dir, tmp_path):
    exp = copy_experiment(sweep_dir, tmp_path / "exp-000")
    result = next(
        p for p in sorted(exp.glob("*/result.json"))
        if json.loads((p.parent / "params.json").read_text())["intervention"] == "full"
    )
    rows = [json.loads(line) for line in result.read_text().splitlines()]
    again = dict(next(r for r in rows if r["phase"] == "finetune" and r["epoch"] == 2), id_f1=0.999)
    with result.open("a") as fh:
        fh.write(json.dumps(again) + "\n")
    df = load_experiments(exp)
    assert len(df) == N_OK * EPOCHS + 1
    hit = df[(df["trial_id"] == again["trial_id"]) & (df["epoch"] == 2)]
    assert len(hit) == 1 and hit["id_f1"].iloc[0] == 0.999


def test_running_and_pending_statuses_from_the_state_file(sweep_dir, tmp_path):
    exp = copy_experiment(sweep_dir, tmp_path / "exp-000")
    trials = load_trials(exp)
    ok = trials[trials["status"] == "finished"].sort_values("trial_id")
    running_id, pending_id = ok["trial_id"].iloc[0], ok["trial_id"].iloc[1]
    pending_dir = Path(ok["trial_dir"].iloc[1])

    def edit(pairs):
        for trial, _ in pairs:
            if trial["trial_id"] == running_id:
                trial["status"] = "RUNNING"
            if trial["trial_id"] == pending_id:
                trial["status"] = "PENDING"
        return pairs

    # A restored driver writes a newer state file; ingest must read the newest one.
    newer = exp / "experiment_state-2999-01-01_00-00-00.json"
    shutil.copy(newest_state(exp), newer)
    edit_state(exp, edit)
    for f in pending_dir.iterdir():  # a PENDING trial's dir is empty on disk
        f.unlink()
    trials = load_trials(exp).set_index("trial_id")
    assert trials.loc[running_id, "status"] == "running"
    assert trials.loc[pending_id, "status"] == "pending"
    assert trials.loc[pending_id, "epochs_done"] == 0
    assert trials.loc[pending_id, "arch"] in ARCHS  # config from the state file
    df = load_experiments(exp)
    assert pending_id not in set(df["trial_id"]) and len(df) == (N_OK - 1) * EPOCHS + 1


def test_error_file_newer_than_a_stale_running_state_means_errored(sweep_dir, tmp_path):
    exp = copy_experiment(sweep_dir, tmp_path / "exp-000")
    trials = load_trials(exp)
    crash = trials[trials["status"] == "errored"].iloc[0]
    retried = trials[trials["status"] == "finished"].iloc[0]

    def stale(pairs):
        for trial, _ in pairs:
            if trial["trial_id"] in (crash["trial_id"], retried["trial_id"]):
                trial["status"] = "RUNNING"
        return pairs

    edit_state(exp, stale)
    state_time = newest_state(exp).stat().st_mtime
    crash_dir, retried_dir = Path(crash["trial_dir"]), Path(retried["trial_dir"])
    # The crash happened after the last snapshot: error.txt is the newest file.
    os.utime(crash_dir / "result.json", (state_time - 20, state_time - 20))
    os.utime(crash_dir / "error.txt", (state_time + 10, state_time + 10))
    # A retried trial: an old error.txt, then results reported after it.
    (retried_dir / "error.txt").write_text("RuntimeError: transient\n")
    os.utime(retried_dir / "error.txt", (state_time + 10, state_time + 10))
    os.utime(retried_dir / "result.json", (state_time + 30, state_time + 30))
    status = load_trials(exp).set_index("trial_id")["status"]
    assert status[crash["trial_id"]] == "errored"
    assert status[retried["trial_id"]] == "running"


def test_trials_missing_from_the_state_file(sweep_dir, tmp_path):
    exp = copy_experiment(sweep_dir, tmp_path / "exp-000")
    edit_state(exp, lambda pairs: pairs[:0])  # the driver died before recording any trial
    trials = load_trials(exp)
    assert len(trials) == N_OK + 1
    counts = trials["status"].value_counts().to_dict()
    # finished: reached finetune_epochs; errored: error.txt in the trial dir.
    assert counts == {"finished": N_OK, "errored": 1}
    assert set(trials["trial_id"]) == set(load_trials(sweep_dir)["trial_id"])


def test_missing_or_empty_paths_raise_naming_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.*does not exist"):
        load_experiments([tmp_path / "nowhere"])
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="empty holds no Ray Tune experiment"):
        load_trials(tmp_path / "empty")


def test_group_labels():
    assert group_label("scratch", None) == "scratch"
    assert group_label("full", None, "imagenet") == "imagenet/full"
    assert group_label("quantity", 25000, "imagenet") == "imagenet/quantity=25000"
    assert group_label("quantity", 25000.0, "inat2017") == "inat2017/quantity=25000"
    assert group_label("diversity", 0.33, "imagenet") == "imagenet/diversity=0.33"
    assert group_label("semantics", "animal") == "semantics=animal"
    assert group_label("classes", 250, "imagenet", '{"budget":300000}') == "imagenet/classes=250 (budget=300000)"
    df = add_group_column(pd.DataFrame({"intervention": ["depth", "scratch"], "value": [5, None]}))
    assert list(df["group"]) == ["depth=5", "scratch"]


def test_default_groups_never_mix_sources_targets_or_params():
    rows = pd.DataFrame({
        "source": ["imagenet", "inat2017", "imagenet", "inat2017", "none", "imagenet", "imagenet"],
        "intervention": ["quantity", "quantity", "full", "full", "scratch", "classes", "classes"],
        "value": [25000, 25000, None, None, None, 250, 250],
        "intervention_params": ["{}", '{"num_classes":1000}', "{}", "{}", "{}", '{"budget":60000}',
                                '{"budget":300000}'],
        "target": ["iwildcam"] * 7,
    })
    assert list(add_group_column(rows)["group"]) == [
        "imagenet/quantity=25000", "inat2017/quantity=25000", "imagenet/full", "inat2017/full", "scratch",
        "imagenet/classes=250 (budget=60000)", "imagenet/classes=250 (budget=300000)"]
    two_targets = rows.iloc[[2, 4, 2, 4]].assign(target=["domainnet-sketch"] * 2 + ["domainnet-real"] * 2)
    assert list(add_group_column(two_targets)["group"]) == [
        "domainnet-sketch: imagenet/full", "domainnet-sketch: scratch", "domainnet-real: imagenet/full",
        "domainnet-real: scratch"]
    several = add_group_column(rows, "source,intervention")["group"]
    assert several.iloc[0] == "imagenet/quantity" and several.iloc[4] == "none/scratch"


def test_write_report(sweep_dir, tmp_path, capsys):
    out = write_report([sweep_dir], out_dir=tmp_path / "rep")
    assert out == tmp_path / "rep"
    printed = capsys.readouterr().out
    crash_id = load_trials(sweep_dir).query("intervention == 'crash'")["trial_id"].iloc[0]
    assert crash_id in printed and "errored" in printed and "scatter.png" in printed

    points = pd.read_csv(out / "points.csv")
    assert len(points) == N_OK * EPOCHS + 1 and "er" in points.columns and "group" in points.columns
    trends = pd.read_csv(out / "trends.csv")
    assert list(trends.columns) == [*TREND_COLUMNS, "subset_images", "subset_classes"]
    assert set(trends["group"]) == LABELS  # two trends per value, two `full` baselines: sources never mix
    assert (trends["n"] == len(ARCHS) * EPOCHS).all()  # the errored trial is not in any fit
    by_group = trends.set_index("group")
    assert by_group.loc["inat2017/full", "source"] == "inat2017" and by_group.loc["scratch", "source"] == "none"
    assert (trends["trend_origin"] == "fit").all()
    er = by_group["mean_er"]
    assert abs(er["scratch"]) < 0.02  # OLS residuals of the baseline average about zero
    assert er["synthnet/full"] > er["synthnet/quantity=25000"] > er["synthnet/quantity=1000"] > er["scratch"]
    assert er["inat2017/full"] > er["inat2017/quantity=1000"]
    assert printed.splitlines()[0].startswith("inat2017/full") and "vs scratch" in printed.splitlines()[0]
    assert ((trends["r2"] > 0.5) & (trends["r2"] <= 1)).all()

    png = out / "scatter.png"
    assert png.stat().st_size > 20_000 and (out / "scatter.pdf").stat().st_size > 5_000
    import matplotlib.image

    img = matplotlib.image.imread(png)
    assert img.shape[0] > 400 and img.shape[1] > 500
    assert img[..., :3].std() > 0.05  # not a blank canvas


def test_report_default_out_dir_and_other_options(sweep_dir, tmp_path):
    exp = copy_experiment(sweep_dir, tmp_path / "demo" / "exp-000")
    with pytest.warns(UserWarning, match="no trend for baseline group 'full'"):
        out = write_report(tmp_path / "demo", transform="logit", baseline="full", group_by="arch")
    assert out == tmp_path / "demo" / "report"
    trends = pd.read_csv(out / "trends.csv")
    assert set(trends["group"]) == set(ARCHS)
    assert trends["mean_er"].isna().all()  # no group called "full" when grouping by arch
    points = pd.read_csv(out / "points.csv")
    assert (points["group"] == points["arch"]).all() and (points["seed"] == 0).all()
    assert set(points["source"]) == {"none", "synthnet", "inat2017"}
    assert find_experiments(tmp_path / "demo") == [exp.resolve()]  # report dir is ignored


def test_report_without_baseline_warns_and_gives_nan(sweep_dir, tmp_path):
    with pytest.warns(UserWarning, match="baseline group 'imagenet'"):
        out = write_report(sweep_dir, out_dir=tmp_path, baseline="imagenet")
    assert pd.read_csv(out / "points.csv")["er"].isna().all()


def test_load_tables_is_one_pass_of_both(sweep_dir):
    trials, rows = load_tables(sweep_dir)
    pd.testing.assert_frame_equal(trials, load_trials(sweep_dir))
    pd.testing.assert_frame_equal(rows, load_experiments(sweep_dir))


def run_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "analysis", *map(str, args)],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )


def test_cli_report(sweep_dir, tmp_path):
    proc = run_cli("report", sweep_dir, "--out", tmp_path / "cli", "--transform", "probit")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "cli" / "scatter.png").is_file() and "trends.csv" in proc.stdout


def test_cli_errors_are_one_line(tmp_path):
    proc = run_cli("report", tmp_path / "nowhere")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert str(tmp_path / "nowhere") in proc.stderr
    proc = run_cli("report", tmp_path)  # exists, but holds no experiment
    assert proc.returncode == 2 and "holds no Ray Tune experiment" in proc.stderr


def test_scatter_plot_directly(tmp_path):
    from analysis.plots import group_colors, scatter_plot
    from analysis.trends import fit_trend

    rng = np.random.default_rng(0)
    x = rng.uniform(0.2, 0.8, 12)
    pts = pd.DataFrame({"id_f1": x, "ood_f1": 0.8 * x, "group": ["scratch"] * 10 + ["lone"] * 2})
    trends = {"scratch": fit_trend(x[:10], 0.8 * x[:10], "linear")}
    png = scatter_plot(pts, trends, tmp_path / "fig.pdf", transform="linear")
    assert png == tmp_path / "fig.png" and png.stat().st_size > 10_000
    assert (tmp_path / "fig.pdf").is_file()
    assert group_colors(["b", "scratch", "a", "full"])["scratch"] == "tab:blue"
    with pytest.raises(ValueError, match="unknown transform"):
        scatter_plot(pts, trends, tmp_path / "x.png", transform="sqrt")
