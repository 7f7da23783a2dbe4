"""Speed settings, thread counts, GPU resources and shared FFCV loaders (issue 12), without timing anything."""
from __future__ import annotations

import json
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from conftest import ROOT
from engine.speed import Speed, SpeedError


def test_speed_flags_are_recorded_and_contradictions_refused():
    record = Speed().record(torch.device("cpu"))
    assert record == {"device": "cpu", "deterministic": False, "cudnn_benchmark": False, "tf32": False,
                      "torch_compile": False, "channels_last": True}
    assert Speed(compile=True).record(torch.device("cpu"))["torch_compile"] is True
    with pytest.raises(SpeedError, match="--compile and --deterministic contradict each other"):
        Speed(deterministic=True, compile=True)


def test_deterministic_turns_off_benchmarking_and_asks_for_deterministic_kernels():
    try:
        record = Speed(deterministic=True).apply(torch.device("cpu"))
        assert record["deterministic"] and not torch.backends.cudnn.benchmark
        assert torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.deterministic
    finally:
        Speed().apply(torch.device("cpu"))
    assert not torch.are_deterministic_algorithms_enabled()


def test_prepare_keeps_state_dict_keys_when_compiling():
    from engine.archs import build_model

    model = build_model("resnet18", 3, 32)
    keys = list(model.state_dict())
    prepared = Speed(compile=True).prepare(model, torch.device("cpu"))  # compiles lazily: nothing runs here
    assert list(prepared.state_dict()) == keys
    assert prepared.conv1.weight.is_contiguous(memory_format=torch.channels_last)


def test_cli_flags_reach_the_run_options(capsys):
    from engine.cli import parser

    args = parser("t").parse_args(["--deterministic"])
    assert args.deterministic and not args.compile
    from engine.cli import sweep_main
    from engine.spec import SweepSpec

    code = sweep_main(lambda a: SweepSpec(name="t", sources=("synthnet",), archs=("resnet18",)), "t",
                      argv=["--deterministic", "--compile", "--dry-run"])
    assert code == 2 and "--compile and --deterministic contradict" in capsys.readouterr().err


def test_trial_threads_follow_the_trial_cpus():
    """In a fresh interpreter: the caps are process-wide."""
    code = ("import json, os, torch, numba; from threadpoolctl import threadpool_info; "
            "from engine.threads import set_trial_threads; applied = set_trial_threads(1); "
            "print(json.dumps({'applied': applied, 'torch': torch.get_num_threads(), "
            "'numba': numba.get_num_threads(), 'omp': os.environ['OMP_NUM_THREADS'], "
            "'blas': sorted({i['num_threads'] for i in threadpool_info()})}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["torch"] == 1 and got["numba"] == 1 and got["omp"] == "1" and got["blas"] in ([], [1])
    assert got["applied"]["torch"] == 1


def test_fractional_gpus_give_one_device_and_a_missing_gpu_is_an_error(monkeypatch):
    from engine import trainable

    required = {"CPU": 2.0, "GPU": 0.5}
    context = SimpleNamespace(get_trial_resources=lambda: SimpleNamespace(required_resources=required))
    monkeypatch.setattr(trainable.tune, "get_context", lambda: context)
    assert trainable._resources() == (2, 1)  # half a GPU: trials share one device
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(trainable.TrialResourceError, match=r"given 1 GPU\(s\) but torch sees no CUDA device on node"):
        trainable._device(1)
    assert trainable._device(0) == torch.device("cpu")


def test_shared_loader_is_compiled_once_and_repointed_like_a_new_loader():
    """Re-pointing a compiled loader at other rows and another seed reads what a new loader would."""
    from datasets import get_source
    from datasets.storage.loaders import make_loader, shared_loader

    src = get_source("synthnet", num_classes=4, images_per_class=12, val_per_class=2)
    path = src.beton("train", 32)
    first = shared_loader(path, 8, 32, 1, train=True, seed=0, indices=np.arange(0, 48, 2))
    rows = np.array([3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 1, 2])
    again = shared_loader(path, 8, 32, 1, train=True, seed=3, indices=rows)
    assert again is first  # same file and pipeline: the compiled loader is reused
    fresh = make_loader(path, 8, 32, 1, train=True, seed=3, indices=rows)
    for epoch in (0, 1):
        again.next_epoch = fresh.next_epoch = epoch
        got = np.concatenate([y.numpy() for _, y in again])
        want = np.concatenate([y.numpy() for _, y in fresh])
        np.testing.assert_array_equal(got, want)
    assert len(again) == len(fresh) == 2
    ordered = shared_loader(path, 8, 32, 1, train=False, indices=rows)
    labels = np.concatenate([y.numpy() for _, y in ordered])
    np.testing.assert_array_equal(labels, src.labels("train")[rows])
