"""Every command line: one-line errors naming the flag and the valid range, no prefix matching, the
closest valid flag or choice for a typo, and a --help that lists defaults and choices without
docstring markup. In-process and fast: nothing here starts Ray or reads data."""
from __future__ import annotations

import argparse
import importlib.util
import re

import pytest
from conftest import ROOT

from analysis.__main__ import _parser as analysis_parser
from datasets.__main__ import _parser as datasets_parser
from engine.cli import parser as sweep_parser
from engine.cli import sweep_main

SCRIPTS = sorted(p.stem for p in (ROOT / "sweeps").glob("*.py"))


def sweep_script(name: str):
    spec = importlib.util.spec_from_file_location(f"sweep_{name}", ROOT / "sweeps" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # the scripts run only under __main__
    return module


def one_line_error(capsys, parse, argv) -> str:
    with pytest.raises(SystemExit) as exit_info:
        parse(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(err) == 1, err
    return err[0]


def every_parser(parser: argparse.ArgumentParser):
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from every_parser(sub)


def test_no_parser_matches_prefixes():
    parsers = [*every_parser(analysis_parser()), *every_parser(datasets_parser()), sweep_parser("t")]
    assert len(parsers) == 6 and not any(p.allow_abbrev for p in parsers)


@pytest.mark.parametrize("argv, message", [
    (["report", "x", "--tranform", "logit"], "unrecognized arguments: --tranform (did you mean --transform?)"),
    (["report", "x", "--trans", "logit"], "unrecognized arguments: --trans"),  # a prefix is not a flag
    (["report", "x", "--transform", "logi"], "invalid choice: 'logi' (choose from 'probit', 'logit', 'linear'); "
                                             "did you mean 'logit'?"),
    (["report", "x", "--seed", "-1"], "argument --seed: must be an integer >= 0, got -1"),
    (["reprot", "x"], "invalid choice: 'reprot' (choose from 'report'); did you mean 'report'?"),
])
def test_analysis_flags(capsys, argv, message):
    assert message in one_line_error(capsys, analysis_parser().parse_args, argv)


@pytest.mark.parametrize("argv, message", [
    (["prepare", "foldr"], "argument SOURCE: invalid choice: 'foldr'"),
    (["prepare", "foldr"], "did you mean 'folder'?"),
    (["prepare", "folder", "--max-res", "64"], "unrecognized arguments: --max-res (did you mean --max-resolution?)"),
    (["prepare", "folder", "--num-workers", "0"], "argument --num-workers: must be an integer >= 1, got 0"),
    (["fractaldb-grid", "--out", "g.png", "--per-class", "x"],
     "argument --per-class: must be an integer >= 1, got 'x'"),
])
def test_datasets_flags(capsys, argv, message):
    assert message in one_line_error(capsys, datasets_parser().parse_args, argv)


def test_hierarchy_flags(capsys, tmp_path):
    from datasets.hierarchy import main

    assert "did you mean 'check'?" in one_line_error(capsys, main, ["chek"])
    # --nltk is not taken for --nltk-data
    assert "the following arguments are required: --nltk-data" in one_line_error(
        capsys, main, ["install-wordnet", "--nltk", str(tmp_path)])


@pytest.mark.parametrize("argv, message", [
    (["--gpus-per-trial", "-1"], "argument --gpus-per-trial: must be a number >= 0, got -1"),
    (["--gpus-per-trial", "nan"], "argument --gpus-per-trial: must be a number >= 0, got nan"),
    (["--cpus-per-trial", "two"], "argument --cpus-per-trial: must be a number > 0, got 'two'"),
    (["--values", ","], "argument --values: give at least one value, comma-separated"),
    (["--archs", " "], "argument --archs: give at least one name, comma-separated"),
    (["--fresh", "--ye"], "unrecognized arguments: --ye (did you mean --yes?)"),
])
def test_sweep_flags(capsys, argv, message):
    assert message in one_line_error(capsys, sweep_parser("t").parse_args, argv)


def help_text(capsys, parse, argv) -> str:
    with pytest.raises(SystemExit) as exit_info:
        parse(argv)
    assert exit_info.value.code == 0
    return capsys.readouterr().out


def test_analysis_help_lists_defaults_choices_and_remote_paths(capsys):
    text = help_text(capsys, analysis_parser().parse_args, ["report", "--help"])
    assert "s3://" in text and "gs://" in text
    assert "{probit,logit,linear}" in text and "(default probit)" in text and "(default scratch)" in text
    assert "(default f1)" in text and "(default 0)" in text
    assert "`" not in text
    assert "`" not in help_text(capsys, analysis_parser().parse_args, ["--help"])


def test_datasets_help_lists_sources_and_one_way_to_point_at_a_folder(capsys):
    from datasets.sources import SOURCES

    text = help_text(capsys, datasets_parser().parse_args, ["prepare", "--help"])
    assert all(name in text for name in SOURCES) and len(SOURCES) >= 12
    assert "prepare folder --data-root /data -o path=my_images" in text and "`" not in text
    text = help_text(capsys, datasets_parser().parse_args, ["fractaldb-grid", "--help"])
    assert "(default 8)" in text and "(default 96)" in text


@pytest.mark.parametrize("name", SCRIPTS)
def test_sweep_help_lists_the_sweeps_choices(capsys, name):
    from engine.archs import ARCHS

    script = sweep_script(name)
    text = help_text(capsys, lambda argv: sweep_main(script.build, script.__doc__.splitlines()[0], argv,
                                                     epilog=script.embedded_help(script.SCALED)), ["--help"])
    assert "`" not in text, [line for line in text.splitlines() if "`" in line]
    embedded = script.build(sweep_parser("t").parse_args([]))
    flat = re.sub(r"\s+", " ", text)
    for source in embedded.pretraining_sources():
        assert source in flat
    for arm in embedded.all_arms():
        assert arm.intervention in flat
    assert all(arch in flat for arch in ARCHS)
    assert f"(default: {embedded.seeds} (embedded default)" in flat
    assert "(default 1)" in flat and "(default 0)" in flat  # cpus and gpus per trial
