"""Cells and their hashes, the architecture registry, and the training loop on real data."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from engine.archs import ARCHS, ArchError, build_model, check_arch, output_size, replace_head
from engine.cli import EMBEDDED_RECIPE
from engine.spec import SweepSpec, cell_id, cells, pretrain_id

DESIGN_KEYS = {"sweep", "source", "intervention", "value", "arch", "seed", "target", "pretrain_epochs",
               "finetune_epochs", "pretrain_resolution", "finetune_resolution", "smoke"}


def spec(**changes) -> SweepSpec:
    base = dict(name="t", intervention="quantity", values=(100, 200), sources=("synthnet",),
                archs=("resnet18", "mobilenet_v3_small"), seeds=2, recipe=EMBEDDED_RECIPE)
    return SweepSpec(**{**base, **changes})


def test_cells_grid_and_keys():
    grid = cells(spec())
    assert len(grid) == 2 * 2 * (1 + 2)  # seeds x archs x (scratch + values)
    keys = set(grid[0])
    assert DESIGN_KEYS <= keys and all(set(c) == keys for c in grid)
    json.dumps(grid)  # flat and JSON-serialisable
    assert all(not isinstance(v, (dict, list)) for c in grid for v in c.values())
    scratch = [c for c in grid if c["intervention"] == "scratch"]
    assert all(c["source"] == "none" and c["value"] is None and c["pretrain_epochs"] == 0 for c in scratch)
    assert len({c["cell_id"] for c in grid}) == len(grid)


def test_cell_identity_ignores_non_result_keys():
    a = cells(spec())[1]
    assert cell_id({**a, "sweep": "another"}) == a["cell_id"]
    assert cell_id({**a, "finetune_lr": 0.5}) != a["cell_id"]
    # scratch cells do not depend on the pre-training recipe
    s1 = cells(spec())[0]
    s2 = cells(spec(recipe=EMBEDDED_RECIPE.__class__(**{**EMBEDDED_RECIPE.__dict__, "pretrain_lr": 0.01})))[0]
    assert s1["intervention"] == "scratch" and s1["cell_id"] == s2["cell_id"]


def test_pretrain_cache_key_includes_seed_but_not_finetuning():
    a = cells(spec())[1]
    assert pretrain_id({**a, "seed": 1}) != pretrain_id(a)
    assert pretrain_id({**a, "finetune_lr": 0.5, "target": "x"}) == pretrain_id(a)
    assert pretrain_id(cells(spec())[0]) is None  # scratch: nothing pre-trained


@pytest.mark.parametrize("name", sorted(ARCHS))
def test_every_arch_builds_at_its_smallest_default(name):
    res = max(32, ARCHS[name].min_resolution)
    model = build_model(name, 7, res)
    assert output_size(model, res) == (1, 7)
    replace_head(model, name, 3)
    assert output_size(model, res) == (1, 3)


def test_small_inputs_adapt_the_stem_and_alexnet_refuses():
    assert isinstance(build_model("resnet18", 5, 16).maxpool, torch.nn.Identity)
    assert not isinstance(build_model("resnet18", 5, 32).maxpool, torch.nn.Identity)
    assert build_model("mobilenet_v3_small", 5, 16).features[0][0].stride == (1, 1)
    with pytest.raises(ArchError, match="alexnet needs inputs of at least 64 px"):
        check_arch("alexnet", 32)
    with pytest.raises(ArchError, match="unknown architecture 'resnet9000'"):
        check_arch("resnet9000", 32)


def test_training_loop_learns_on_real_data():
    """A few epochs on a .beton of synthnet: the loss falls and accuracy beats chance."""
    from datasets import get_source
    from datasets.storage.loaders import make_loader
    from engine.loops import evaluate, finetune_optimizer, train_epoch

    torch.manual_seed(0)
    net = get_source("synthnet", num_classes=5, images_per_class=40, val_per_class=10)
    train = make_loader(net.beton("train", 32), 20, 32, 1, train=True, seed=0, crop_scale=0.5)
    val = make_loader(net.beton("val", 32), 50, 32, 1, train=False)
    model = build_model("resnet18", 5, 32)
    recipe = SimpleNamespace(optimizer="adam", lr=1e-3, weight_decay=0.0)
    optimizer, scheduler = finetune_optimizer(model, recipe, len(train))
    losses = [train_epoch(model, train, optimizer, scheduler, None, torch.device("cpu"))["train_loss"]
              for _ in range(4)]
    metrics = evaluate(model, {"val": val}, torch.device("cpu"))
    assert losses[-1] < losses[0]
    assert metrics["val_acc"] > 0.4 and 0 <= metrics["val_f1"] <= 1  # chance is 0.2


def trial(config: dict, status: str, result: dict, failures: int = 0) -> SimpleNamespace:
    """What the cell table reads of a Tune trial."""
    return SimpleNamespace(config=config, status=status, last_result=result, trial_id=config["cell_id"][:8],
                           run_metadata=SimpleNamespace(num_failures=failures))


def test_cell_table_rows_and_refresh_rate():
    import io

    from engine.console import COLUMNS, CellTable, cell_row

    scratch, first = cells(spec(seeds=1, archs=("resnet18",), baselines=("scratch",)))[:2]
    running = trial(scratch, "RUNNING", {"phase": "finetune", "epoch": 2, "id_f1": 0.41234, "ood_f1": 0.2,
                                         "images_per_s": 812.3, "pretrain_loss": 2.0})
    retried = trial(first, "PENDING", {"phase": "pretrain", "epoch": 1, "images_per_s": 500.0}, failures=1)
    assert cell_row(running) == ("resnet18-scratch-s0", "finetune", f"2/{scratch['finetune_epochs']}", "41.2", "20.0",
                                 "812", "running")
    # pre-training: its own epoch count, no F1 yet; a trial retried from its checkpoint says so
    assert cell_row(retried) == ("resnet18-synthnet-quantity=100-s0", "pretrain", f"1/{first['pretrain_epochs']}",
                                 "-", "-", "500", "pending (retry 1)")
    assert cell_row(trial(first, "TERMINATED", {}))[1:] == ("-", "-", "-", "-", "-", "finished")
    out = io.StringIO()
    table = CellTable("t/exp-000", interval=3600, stream=out)
    table.setup()
    assert table.should_report([running])  # the first table comes at once
    table.report([running, retried], False, "Logical resource usage: 2.0/2 CPUs, 0/0 GPUs")
    assert not table.should_report([running, retried])  # within the interval: no new table
    assert table.should_report([running, retried], done=True)  # the last one always comes
    text = out.getvalue().strip().splitlines()
    assert text[0].startswith("t/exp-000: 0/2 cells finished, 1 running, 1 pending, 0 errored |")
    assert text[0].endswith("| 2.0/2 CPUs, 0/0 GPUs") and [c.strip() for c in text[1].split("|")] == list(COLUMNS)
    assert [c.strip() for c in text[2].split("|")] == list(cell_row(running))
    table.interval = 0
    assert not table.should_report([running, retried])  # nothing changed since the last table
    assert table.should_report([running, trial(first, "RUNNING", {"phase": "finetune", "epoch": 1})])
