"""The report's figures, HTML page, baseline files and remote paths, from the real demo sweep.

The demo sweep is the one real local Tune run of ``test_analysis_report`` (made once per
session); tests that change files work on copies.
"""

import base64
import json
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_analysis_report import ARCHS, EPOCHS, N_OK, REPO, demo_sweep, edit_state

from analysis.baselines import load_baselines
from analysis.groups import FULL_COLOR, SCRATCH_COLOR, group_colors
from analysis.ingest import load_experiments, load_trials
from analysis.report import write_report

PLOTS = ("scatter", "residuals", "er_bars")


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
    return demo_sweep(tmp_path_factory)


@pytest.fixture(scope="module")
def report(sweep_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    write_report([sweep_dir], out_dir=out)
    return out


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


def test_every_plot_is_written_as_png_and_pdf(report):
    import matplotlib.image

    for name in PLOTS:
        png, pdf = report / f"{name}.png", report / f"{name}.pdf"
        assert png.stat().st_size > 15_000, name
        assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 5_000, name
        width, height = png_size(png)
        # 3.3 in at 300 dpi (a paper column) per panel, plus tick labels; never a huge canvas.
        panels = 2 if name == "scatter" else 1  # two pre-training sources: one scatter panel each
        assert 800 * panels <= width <= 1300 * panels and 400 <= height <= 1400, (name, width, height)
        img = matplotlib.image.imread(png)[..., :3]
        assert img.std() > 0.05, name  # not blank
        assert (img.mean(axis=2) > 0.97).mean() > 0.4, name  # mostly white background


def test_group_colours_are_shared_and_the_papers_blue_and_cyan(report):
    import matplotlib.image
    from matplotlib.colors import to_rgb

    colors = group_colors(["quantity=25000", "full", "scratch", "quantity=1000", "imagenet"])
    assert colors["scratch"] == SCRATCH_COLOR and colors["full"] == FULL_COLOR
    assert colors["imagenet"] == FULL_COLOR
    assert colors["quantity=1000"] != colors["quantity=25000"]
    assert group_colors(["quantity=1000", "scratch"])["quantity=1000"] == colors["quantity=1000"]
    # The report colours every group of its points with one mapping (errored ones too) ...
    colors = group_colors(pd.read_csv(report / "points.csv")["group"].unique())
    # ... and the ER bars are filled with those colours: each must appear in the PNG.
    img = matplotlib.image.imread(report / "er_bars.png")[..., :3].reshape(-1, 3)
    for g in ("synthnet/full", "synthnet/quantity=1000", "synthnet/quantity=25000", "inat2017/quantity=1000"):
        dist = np.abs(img - np.array(to_rgb(colors[g]))).max(axis=1)
        assert (dist < 0.02).sum() > 1000, g
    # each source's full baseline is a cyan, never the same as the other's
    assert colors["inat2017/full"] == FULL_COLOR and colors["synthnet/full"] != FULL_COLOR
    html = (report / "report.html").read_text()
    for g in ("scratch", "synthnet/full", "synthnet/quantity=1000"):
        from matplotlib.colors import to_hex

        assert f"background:{to_hex(colors[g])}'></span>{g}" in html


def test_residuals_are_leave_one_architecture_out_within_the_full_group(report):
    """Each architecture of a `full` group against a linregress of the group's other architectures."""
    from scipy import stats

    res = pd.read_csv(report / "residuals.csv")
    assert set(res["arch"]) == set(ARCHS) and sorted(res["epoch"].unique()) == [1, 2, 3, 4]
    assert (res["n"] == 1).all()  # one seed per architecture
    points = pd.read_csv(report / "points.csv")
    full = points[points["group"] == "inat2017/full"]  # the first full group in display order
    for arch in ARCHS:
        rest, mine = full[full["arch"] != arch], full[full["arch"] == arch].sort_values("epoch")
        fit = stats.linregress(stats.norm.ppf(rest["id_f1"]), stats.norm.ppf(rest["ood_f1"]))
        expected = mine["ood_f1"] - stats.norm.cdf(fit.intercept + fit.slope * stats.norm.ppf(mine["id_f1"]))
        got = res[res["arch"] == arch].sort_values("epoch")["mean"]
        np.testing.assert_allclose(got.to_numpy(), expected.to_numpy(), atol=1e-9)
    html = (report / "report.html").read_text()
    assert "leave-one-architecture-out" in html


def test_residual_trend_can_be_chosen(sweep_dir, tmp_path):
    from analysis.residuals import epoch_residuals
    from analysis.trends import fit_trend

    write_report([sweep_dir], out_dir=tmp_path, residual_trend="scratch")
    res = pd.read_csv(tmp_path / "residuals.csv")
    points = pd.read_csv(tmp_path / "points.csv")
    scratch = points[(points["group"] == "scratch") & (points["status"] == "finished")]
    full = points[points["group"] == "inat2017/full"]
    expected = epoch_residuals(full, fit_trend(scratch["id_f1"], scratch["ood_f1"]))
    assert np.allclose(res["mean"], expected["mean"]) and len(res) == len(ARCHS) * EPOCHS
    assert "prediction of the scratch trend" in (tmp_path / "report.html").read_text()
    with pytest.raises(ValueError, match="--residual-trend 'nope' has no fitted or given trend; trends: .*scratch"):
        write_report([sweep_dir], out_dir=tmp_path / "x", residual_trend="nope")


def test_html_is_self_contained_with_plots_tables_and_exclusions(report, sweep_dir):
    html = (report / "report.html").read_text()
    images = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", html)
    assert len(images) == 3
    for data, name in zip(images, PLOTS, strict=True):
        assert base64.b64decode(data) == (report / f"{name}.png").read_bytes()
    assert not re.search(r"(src|href)=['\"]https?://", html)  # nothing fetched
    assert "<link" not in html and "<script" not in html
    crash = load_trials(sweep_dir).query("intervention == 'crash'").iloc[0]
    assert "Excluded trials (1)" in html and crash["trial_id"] in html
    assert "simulated crash in epoch 2" in html
    assert str(sweep_dir) in html and f"{N_OK} finished, 1 errored" in html
    trends = pd.read_csv(report / "trends.csv").set_index("group")
    full = trends.loc["synthnet/full"]
    # Percent and percentage points on the page; fractions in the file.
    assert f"{100 * full['mean_er']:+.2f}" in html
    assert f"[{100 * full['er_ci_lo']:+.2f}, {100 * full['er_ci_hi']:+.2f}]" in html
    assert "subset images" in html and "25,000" in html


def test_trends_csv_has_er_cis_and_subset_sizes(report):
    trends = pd.read_csv(report / "trends.csv").set_index("group")
    assert (trends["er_ci_lo"] <= trends["mean_er"]).all()
    assert (trends["mean_er"] <= trends["er_ci_hi"]).all()
    assert trends.loc["scratch", "er_ci_lo"] < 0 < trends.loc["scratch", "er_ci_hi"]
    assert trends.loc["synthnet/full", "er_ci_lo"] > 0.05  # clearly more robust than scratch
    assert pd.isna(trends.loc["scratch", "subset_images"])  # no pre-training subset: "–", never 0
    assert trends.loc["synthnet/quantity=25000", "subset_images"] == 25000
    assert (trends["trend_origin"] == "fit").all() and (trends["transform"] == "probit").all()
    assert (trends["n_trials"] == len(ARCHS)).all() and not trends["few_trials"].any()


def test_errored_and_running_trials_are_reported(sweep_dir, tmp_path):
    exp = Path(shutil.copytree(sweep_dir / "exp-000", tmp_path / "demo" / "exp-000"))
    trials = load_trials(exp)
    running = trials.query("status == 'finished' and source == 'synthnet' and intervention == 'quantity' and value == 1000")
    running = running.iloc[0]
    running_id = running["trial_id"]
    # Still running: the state says RUNNING and only 2 of 4 epochs are in result.json.
    edit_state(exp, lambda pairs: [
        [dict(t, status="RUNNING") if t["trial_id"] == running_id else t, m] for t, m in pairs
    ])
    result = Path(running["trial_dir"]) / "result.json"
    lines = [ln for ln in result.read_text().splitlines()
             if json.loads(ln).get("phase") != "finetune" or json.loads(ln)["epoch"] <= 2]
    result.write_text("\n".join(lines) + "\n")

    df = load_experiments(exp)
    status = df.groupby("trial_id")["status"].first()
    assert status[running_id] == "running" and (status == "errored").sum() == 1
    assert (df["trial_id"] == running_id).sum() == 2

    out = write_report(exp, out_dir=tmp_path / "rep")
    html = (out / "report.html").read_text()
    assert "Excluded trials (2)" in html
    assert re.search(rf"{running_id}</td><td class='l'>running", html)
    assert re.search(r"</td><td class='l'>errored", html)
    assert f"{N_OK - 1} finished, 1 errored, 1 running" in html
    trends = pd.read_csv(out / "trends.csv").set_index("group")
    assert trends.loc["synthnet/quantity=1000", "n"] == (len(ARCHS) - 1) * EPOCHS  # only finished trials
    assert trends.loc["synthnet/quantity=1000", "n_trials"] == len(ARCHS) - 1
    assert trends.loc["synthnet/quantity=1000", "few_trials"]  # 2 trials: flagged ...
    assert "(few trials)" in html  # ... in the table too
    assert trends["n"].sum() == (N_OK - 1) * EPOCHS


BASELINE_YAML = """\
- name: imagenet
  slope: 0.95
  intercept: -0.25
  transform: probit
- {name: taori, slope: 1.0, intercept: -0.5, transform: logit}
"""


def test_baseline_file_as_the_er_baseline(sweep_dir, tmp_path):
    path = tmp_path / "baselines.yaml"
    path.write_text(BASELINE_YAML)
    given = load_baselines(path)
    assert set(given) == {"imagenet", "taori"} and given["taori"].transform == "logit"
    out = write_report(sweep_dir, out_dir=tmp_path / "rep", baseline="imagenet",
                       baseline_file=path, transform="logit")
    points = pd.read_csv(out / "points.csv")
    expected = points["ood_f1"] - given["imagenet"].predict(points["id_f1"])
    np.testing.assert_allclose(points["er"], expected, rtol=1e-12)
    trends = pd.read_csv(out / "trends.csv").set_index("group")
    assert trends.loc["imagenet", "trend_origin"] == "file" and trends.loc["imagenet", "n"] == 0
    assert trends.loc["imagenet", "slope"] == 0.95
    html = (out / "report.html").read_text()
    assert "it has no points and no bootstrap band" in html
    for name in PLOTS:
        assert (out / f"{name}.png").stat().st_size > 15_000


@pytest.mark.parametrize(
    "text, suffix, match",
    [
        ('{"name": "x", "slope": "steep", "intercept": 0}', ".json", "baseline 'x': field 'slope'"),
        ("- name: x\n  slope: 1\n", ".yaml", "baseline 'x': field 'intercept'"),
        ("- slope: 1\n  intercept: 0\n", ".yml", "baseline 1: field 'name'"),
        ("- {name: x, slope: 1, intercept: 0, transform: log}", ".yaml", "field 'transform'"),
        ("- {name: x, slope: 1, intercept: 0, colour: red}", ".yaml", "unknown field 'colour'"),
        ("{not json", ".json", "not valid JSON"),
        ("[]", ".json", "expected a baseline entry"),
    ],
)
def test_malformed_baseline_files_name_file_and_field(tmp_path, text, suffix, match):
    path = tmp_path / f"b{suffix}"
    path.write_text(text)
    with pytest.raises(ValueError, match=re.escape(str(path)) + ".*" + re.escape(match)):
        load_baselines(path)


def test_file_uri_reads_like_the_local_dir(sweep_dir, tmp_path):
    """The pyarrow path that s3:// takes, through file:// (no network here)."""
    local = load_experiments(sweep_dir)
    uri = f"file://{sweep_dir}"
    remote = load_experiments([uri])
    assert len(remote) == len(local)
    assert remote["experiment"].str.startswith(uri).all()
    assert remote["trial_dir"].str.startswith(uri).all()
    cols = ["trial_id", "status", "epoch", "id_f1", "ood_f1", "arch", "value"]
    pd.testing.assert_frame_equal(remote[cols], local[cols])
    # Remote statuses need the files' times: the crash stays "errored".
    assert (remote.groupby("trial_id")["status"].first() == "errored").sum() == 1
    out = write_report([uri], out_dir=f"file://{tmp_path}/rep")
    assert out == f"file://{tmp_path}/rep" and (tmp_path / "rep" / "report.html").is_file()
    with pytest.raises(FileNotFoundError, match="nowhere does not exist"):
        load_experiments([f"file://{tmp_path}/nowhere"])


def test_remote_copy_skips_checkpoints(sweep_dir, tmp_path):
    from analysis.remote import download_small_files

    src = Path(shutil.copytree(sweep_dir, tmp_path / "src"))
    trial = next(p for p in (src / "exp-000").iterdir() if p.is_dir())
    (trial / "checkpoint_000001").mkdir()
    (trial / "checkpoint_000001" / "model.pt").write_bytes(b"\0" * 1000)
    (trial / "checkpoint_000001" / "result.json").write_text("{}")
    dest = download_small_files(f"file://{src}", tmp_path / "dest")
    copied = {p.name for p in dest.rglob("*") if p.is_file()}
    assert copied <= {"params.json", "result.json", "progress.csv", "error.txt", "error.pkl"} | {
        p.name for p in (src / "exp-000").glob("experiment_state-*.json")}
    assert not list(dest.rglob("checkpoint_*"))
    assert len(load_experiments(dest)) == len(load_experiments(sweep_dir))


def test_cli_with_baseline_file_and_errors(sweep_dir, tmp_path):
    path = tmp_path / "b.yaml"
    path.write_text(BASELINE_YAML)
    proc = subprocess.run(
        [sys.executable, "-m", "analysis", "report", str(sweep_dir), "--out", str(tmp_path / "o"),
         "--baseline-file", str(path), "--baseline", "imagenet", "--no-progress"],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "report.html" in proc.stdout and "imagenet" in proc.stdout
    path.write_text("- {name: imagenet, slope: 1}\n")
    proc = subprocess.run(
        [sys.executable, "-m", "analysis", "report", str(sweep_dir), "--baseline-file",
         str(path)], cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "error:" in proc.stderr and "field 'intercept'" in proc.stderr and str(path) in proc.stderr


def test_progress_bar_on_request(sweep_dir, capsys):
    load_experiments(sweep_dir, progress=True)
    assert "reading trials" in capsys.readouterr().err
    load_experiments(sweep_dir)  # 19 trials: below the threshold, no bar
    assert "reading trials" not in capsys.readouterr().err
