"""What a user sees around a real smoke sweep: Ctrl-C and the resume it prints, the cell table and
the closing summary, one TensorBoard run per cell, `--fresh`'s question, a finished sweep run
again, and report captions that describe what the figures draw.

One sweep (data_quantity --smoke: scratch, full and two quantities of resnet18, 2 fine-tuning
epochs) is interrupted with Ctrl-C as a terminal sends it (SIGINT to the process group), resumed
with the command it printed, then run once more; the tests read what these runs left.
"""
from __future__ import annotations

import base64
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, run_sweep_script

from analysis.ingest import load_experiments, load_trials

pytestmark = pytest.mark.slow
SMOKE_CELLS, SMOKE_EPOCHS = 4, 2  # scratch, full and two quantities of one architecture
CELLS = {"resnet18-scratch-s0", "resnet18-synthnet-full-s0", "resnet18-synthnet-quantity=100-s0",
         "resnet18-synthnet-quantity=400-s0"}
PRETRAINED = CELLS - {"resnet18-scratch-s0"}
COLUMNS = ["cell", "phase", "epoch", "ID F1 %", "OOD F1 %", "images/s", "status"]


def result_rows(trial_dir: Path) -> list[dict]:
    path = trial_dir / "result.json"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def assert_complete(sweep: Path) -> None:
    """Every cell finished, with exactly one row per fine-tuning epoch 1..E and scores in [0, 1]."""
    df = load_experiments([sweep])
    trials = load_trials([sweep])
    assert len(trials) == SMOKE_CELLS and set(trials["status"]) == {"finished"}, trials[["trial_id", "status"]]
    assert df["cell_id"].nunique() == SMOKE_CELLS
    for _, rows in df.groupby("cell_id"):
        assert sorted(rows["epoch"]) == list(range(1, SMOKE_EPOCHS + 1))
    assert df[["id_f1", "ood_f1", "id_val_f1", "ood_val_f1"]].apply(lambda s: s.between(0, 1).all()).all()
    for trial_dir in sweep.glob("exp-*/cell-*"):  # on disk too, not only after ingest de-duplicates
        epochs = [r["epoch"] for r in result_rows(trial_dir) if r.get("phase") == "finetune"]
        assert sorted(epochs) == list(range(1, SMOKE_EPOCHS + 1)), (trial_dir, epochs)


def finetune_rows(trial_dir: Path) -> list[dict]:
    return sorted((r for r in result_rows(trial_dir) if r.get("phase") == "finetune"), key=lambda r: r["epoch"])


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    storage = tmp_path_factory.mktemp("sweeps")
    sweep = storage / "data_quantity-smoke"
    (sweep / "exp-000" / "cell-0123456789abcdef").mkdir(parents=True)  # an older sweep, for --fresh
    base = ["--smoke", "--storage-path", str(storage)]

    cmd = [sys.executable, str(ROOT / "sweeps" / "data_quantity.py"), *base, "--fresh", "--yes"]
    # A session of its own, so Ctrl-C can reach the whole process group, as a terminal sends it.
    first = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             start_new_session=True)
    deadline = time.monotonic() + 400
    while time.monotonic() < deadline and first.poll() is None:  # stop once a cell has fine-tuned an epoch
        if any(finetune_rows(d) for d in sweep.glob("exp-*/cell-*")):
            break
        time.sleep(0.5)
    assert first.poll() is None, "the sweep ended before Ctrl-C"
    os.killpg(first.pid, signal.SIGINT)
    out, err = first.communicate(timeout=300)
    stopped = {"returncode": first.returncode, "stdout": out, "stderr": err, "report": (sweep / "report").exists(),
               "trials": {d: finetune_rows(d) for d in sweep.glob("exp-*/cell-*")}}

    resume = re.search(r"Resume with: (.*)$", err.strip().splitlines()[-1])
    assert resume, err[-2000:]
    argv = shlex.split(resume.group(1))
    resumed = subprocess.run([sys.executable, *argv[1:]], cwd=ROOT, capture_output=True, text=True, timeout=600)
    again = run_sweep_script("data_quantity.py", *base, timeout=300)
    return {"storage": storage, "sweep": sweep, "stopped": stopped, "resume": argv, "resumed": resumed,
            "again": again}


def test_fresh_without_a_terminal_refuses_unless_yes(runs, capsys, monkeypatch):
    from test_cli_flags import sweep_script

    from engine.cli import sweep_main

    olds = list(runs["storage"].glob("data_quantity-smoke.old-*"))  # moved aside once, by --fresh --yes
    assert len(olds) == 1 and (olds[0] / "exp-000" / "cell-0123456789abcdef").is_dir()
    script = sweep_script("data_quantity")
    monkeypatch.setattr("sys.stdin", open(os.devnull))  # no terminal to ask
    status = sweep_main(script.build, "t", ["--smoke", "--storage-path", str(runs["storage"]), "--fresh"])
    out = capsys.readouterr()
    lines = out.err.strip().splitlines()
    assert status == 2 and len(lines) == 1, out.err
    assert f"--fresh would move {runs['sweep']} (4 cells' results)" in lines[0] and "add --yes" in lines[0]
    assert "Ray" not in out.out and list(runs["storage"].glob("data_quantity-smoke.old-*")) == olds


def test_ctrl_c_stops_the_cells_and_prints_how_to_resume(runs):
    stopped, sweep = runs["stopped"], runs["sweep"]
    assert stopped["returncode"] == 130, stopped["stderr"][-3000:]
    last = stopped["stderr"].strip().splitlines()[-1]
    assert last.startswith("interrupted: ") and "of 4 cells finished" in last
    assert runs["resume"][1:] == [str(ROOT / "sweeps" / "data_quantity.py"), "--smoke", "--storage-path",
                                  str(runs["storage"])]  # the same command, without --fresh and --yes
    for text in (stopped["stdout"], stopped["stderr"]):
        assert "Traceback" not in text and "Tuner.restore" not in text and "FileNotFoundError" not in text
    assert "report of" not in stopped["stdout"]  # no report on a partial sweep ...
    assert not stopped["report"]
    for trial_dir, rows in stopped["trials"].items():  # each cell that fine-tuned keeps its last epoch's checkpoint
        if rows:
            record = json.loads(next(trial_dir.glob("checkpoint_*/cell.json")).read_text())
            assert len(record["history"]) >= rows[-1]["epoch"]
    assert not (sweep / ".driver.json").exists()


def test_resume_finishes_every_cell_once(runs):
    resumed, sweep = runs["resumed"], runs["sweep"]
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert_complete(sweep)
    for trial_dir, rows in runs["stopped"]["trials"].items():  # epochs done before Ctrl-C were not trained again
        kept = [r["timestamp"] for r in finetune_rows(trial_dir)][:len(rows)]
        assert kept == [r["timestamp"] for r in rows]


def tables(stdout: str) -> list[list[list[str]]]:
    """Every cell table printed: rows of cells, split on the column separators."""
    found, lines = [], stdout.splitlines()
    for i, line in enumerate(lines):
        if [c.strip() for c in line.split("|")] == COLUMNS:
            rows = []
            for row in lines[i + 1:]:
                if not row.strip():
                    break
                rows.append([c.strip() for c in row.split("|")])
            found.append(rows)
    return found


def test_console_shows_one_row_per_cell_and_a_closing_summary(runs):
    out, sweep = runs["resumed"].stdout, runs["sweep"]
    last = tables(out)[-1]
    assert {row[0] for row in last} == CELLS and all(len(row) == len(COLUMNS) for row in last)
    for name, phase, epoch, id_f1, ood_f1, speed, status in last:
        trial_dir = next(d for d in sweep.glob("exp-*/cell-*") if _name(d) == name)
        row = finetune_rows(trial_dir)[-1]  # the table shows the cell's latest report, in percent
        assert (phase, epoch, status) == ("finetune", "2/2", "finished")
        assert id_f1 == f"{100 * row['id_f1']:.1f}" and ood_f1 == f"{100 * row['ood_f1']:.1f}"
        assert float(speed) > 0
    for text in (out, runs["stopped"]["stdout"]):
        assert "pretrain_loss" not in text and "configuration" not in text and "None" not in text
        assert "driver_artifacts" not in text and text.count("tensorboard --logdir") == 1
        assert re.search(r"^Ray dashboard: http://127\.0\.0\.1:\d+", text, re.M)
    summary = out.strip().splitlines()[-4:]
    assert summary[0].startswith("done: 4 of 4 cells finished, 0 errored")
    assert summary[1] == f"results: {sweep}"
    assert summary[2] == f"report:  {(sweep / 'report' / 'report.html').as_uri()}"
    assert (sweep / "report" / "report.html").is_file()
    assert summary[3].startswith("next:    ") and "--smoke" not in summary[3] and "data_quantity.py" in summary[3]


def _name(trial_dir: Path) -> str:
    from engine.spec import describe_cell

    return describe_cell(json.loads((trial_dir / "params.json").read_text()))


def test_tensorboard_has_one_run_per_cell_stepped_by_epoch(runs):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    sweep = runs["sweep"]
    logdir = sweep / "tensorboard"
    assert {p.name for p in logdir.iterdir()} == CELLS
    assert not list(sweep.glob("exp-*/cell-*/events.out.tfevents*"))  # Tune's runs per trial directory are gone
    for trial_dir in sweep.glob("exp-*/cell-*"):
        name = _name(trial_dir)
        events = EventAccumulator(str(logdir / name))
        events.Reload()
        tags = set(events.Tags()["scalars"])
        rows = finetune_rows(trial_dir)
        for metric in ("id_f1", "ood_f1", "id_acc", "ood_acc", "train_loss"):
            scalars = events.Scalars(f"finetune/{metric}")
            assert [s.step for s in scalars] == [r["epoch"] for r in rows] == [1, 2]  # step = fine-tuning epoch
            assert [s.value for s in scalars] == pytest.approx([r[metric] for r in rows], rel=1e-6)
        pretrain = {t for t in tags if t.startswith("pretrain/")}
        if name in PRETRAINED:  # pre-trained once in this sweep (a fresh storage): own tags, step = its epoch
            epochs = json.loads((trial_dir / "params.json").read_text())["pretrain_epochs"]
            assert {"pretrain/loss", "pretrain/images_per_s", "pretrain/val_f1"} <= pretrain
            assert [s.step for s in events.Scalars("pretrain/loss")] == list(range(1, epochs + 1)) == [1]
            reported = [r for r in result_rows(trial_dir) if r.get("phase") == "pretrain"]
            if reported:  # (a cell restarted without a checkpoint gets a new result.json from Tune)
                assert [s.value for s in events.Scalars("pretrain/loss")] == pytest.approx(
                    [r["pretrain_loss"] for r in reported], rel=1e-6)
        else:
            assert not pretrain
        assert not tags - pretrain - {t for t in tags if t.startswith("finetune/")}


def test_a_finished_sweep_run_again_starts_nothing(runs):
    again = runs["again"]
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"all 4 cells already finished in {runs['sweep']}; nothing to run" in again.stdout
    assert "Ray dashboard" not in again.stdout and "resuming" not in again.stdout
    assert "done: 4 of 4 cells finished" in again.stdout


def test_fresh_on_a_terminal_asks_first(runs):
    import pty

    main, secondary = pty.openpty()
    os.write(main, b"n\n")
    out = run_sweep_script("data_quantity.py", "--smoke", "--storage-path", str(runs["storage"]), "--fresh",
                           stdin=secondary, timeout=120)
    os.close(secondary)
    os.close(main)
    assert "--fresh: move" in out.stdout and "[y/N]" in out.stdout
    assert out.returncode == 2 and "--fresh not confirmed" in out.stderr and "unchanged" in out.stderr
    assert len(list(runs["storage"].glob("data_quantity-smoke.old-*"))) == 1 and runs["sweep"].is_dir()


def drawn_report(monkeypatch, sweep: Path, out: Path, **options) -> tuple[dict, dict]:
    """Write the report, keeping each saved matplotlib figure; return (figures, captions) by file stem."""
    import analysis.plots as plots
    from analysis.report import write_report

    figures, save = {}, plots._save

    def keep(fig, png):
        figures[png.stem] = fig
        save(fig, png)

    monkeypatch.setattr(plots, "_save", keep)
    write_report([sweep], out_dir=out, **options)
    html = (out / "report.html").read_text()
    captions = {}
    for src, caption in re.findall(r"src='data:image/png;base64,([^']+)'><figcaption><b>[^<]*</b> ([^<]*)</figcaption>",
                                   html):
        stem = next(s for s in figures if (out / f"{s}.png").read_bytes() == base64.b64decode(src))
        captions[stem] = caption.replace("&#x27;", "'")
    return figures, captions


def artists(fig) -> dict:
    from matplotlib.collections import LineCollection, PolyCollection

    axes = fig.axes
    lines = [line for ax in axes for line in ax.get_lines()]
    return {
        "bands": any(isinstance(c, PolyCollection) for ax in axes for c in ax.collections),
        "dash-dot": any(line.get_linestyle() == "-." for line in lines),
        "y = x": any(line.get_linestyle() == "--" for line in lines),
        "error bars": any(isinstance(c, LineCollection) for ax in axes for c in ax.collections),
        "hatched": any(p.get_hatch() for ax in axes for p in ax.patches),
        "few trials": any("(few trials)" in t.get_text() for ax in axes for t in
                          [*ax.get_yticklabels(), *(ax.get_legend().get_texts() if ax.get_legend() else [])]),
    }


def test_captions_say_what_the_figures_draw(runs, monkeypatch, tmp_path):
    sweep = runs["sweep"]
    given = tmp_path / "given.yaml"
    given.write_text("- {name: published, slope: 0.9, intercept: -0.3, transform: probit}\n")
    seen = set()
    for options in ({}, {"residual_trend": "scratch", "baseline_file": str(given)}):
        out = tmp_path / f"report{len(seen)}"
        figures, captions = drawn_report(monkeypatch, sweep, out, **options)
        assert set(figures) == set(captions)
        for stem, fig in figures.items():
            drawn, caption = artists(fig), captions[stem]
            seen |= {(stem, k, v) for k, v in drawn.items()}
            if stem == "scatter":
                assert drawn["bands"] == ("bootstrap band" in caption), caption
                assert drawn["dash-dot"] == ("Dash-dot" in caption), caption
                assert drawn["y = x"] == ("y = x" in caption), caption
                assert "full" not in caption or "synthnet/full" in caption  # names only the lines drawn
            if stem == "residuals":
                assert drawn["error bars"] == ("error bars" in caption), caption
            if stem == "er_bars":
                assert drawn["hatched"] == ("hatched" in caption), caption
            assert drawn["few trials"] == ("few trials" in caption), (stem, caption)
        html = (out / "report.html").read_text()
        if "residual_trend" not in options:  # one architecture: the check can only be skipped, and says why
            assert "residuals" not in figures
            assert "The residual-by-epoch check was skipped: the synthnet/full group has one architecture" in html
    # the runs covered both sides of each check that the smoke data can show
    assert {("scatter", "dash-dot", True), ("scatter", "dash-dot", False), ("residuals", "error bars", False),
            ("er_bars", "hatched", True), ("scatter", "few trials", True)} <= seen


def test_tables_flag_two_point_fits_and_leave_scratch_sizes_blank(runs):
    import pandas as pd

    report = runs["sweep"] / "report"
    trends = pd.read_csv(report / "trends.csv").set_index("group")
    assert (trends["n"] == 2).all() and trends["few_trials"].all()  # one trial of 2 epochs per group
    assert pd.isna(trends.loc["scratch", "subset_images"]) and pd.isna(trends.loc["scratch", "subset_classes"])
    html = (report / "report.html").read_text()
    for group in trends.index:
        row = re.search(rf"{re.escape(group)} <span class='muted'>\(few trials\)</span></td>(.*?)</tr>", html)
        assert row, group
        cells = re.findall(r"<td[^>]*>([^<]*)</td>", row.group(1))
        assert cells[7] == "–"  # r²: a line through 2 points fits them exactly, so no r² is shown
        if group == "scratch":
            assert cells[3:5] == ["–", "–"]  # subset images and classes: none for scratch
    printed = runs["resumed"].stdout
    assert "* fewer than 3 trials" in printed
