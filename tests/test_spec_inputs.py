"""Issue 8's correctness items: cache keys cover every input, schemas, the reference recipe, precision,
flags that select part of a grid, grid entries a source cannot fill, and given weights."""
from __future__ import annotations

import json
from dataclasses import fields, replace

import pytest
import torch

from datasets.storage.location import Location
from engine.cli import SweepParser, apply_flags, parser
from engine.inputs import SCHEMA, FinetuneInputs, PretrainInputs
from engine.recipes import EMBEDDED_RECIPE, REFERENCE_RECIPE
from engine.spec import NON_RESULT_KEYS, Arm, SweepSpec, Target, cell_id, cells, pretrain_id


def image_diversity_spec(**changes) -> SweepSpec:
    """The paper's 4a grid in miniature: `classes` at two budgets over one source."""
    base = dict(name="t", sources=("synthnet",), archs=("resnet18",), recipe=EMBEDDED_RECIPE,
                arms=(Arm("classes", (5, 10), params={"budget": 100}), Arm("classes", (5,), params={"budget": 300})))
    return SweepSpec(**{**base, **changes})


def different(value):
    """Some other value of the same kind (for every field type of the inputs)."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    if isinstance(value, str):
        return value + "x"
    return "something"


def test_changing_any_pretraining_input_changes_the_cache_key():
    inputs = PretrainInputs.from_config(cells(image_diversity_spec())[1])
    for f in fields(PretrainInputs):
        changed = replace(inputs, **{f.name: different(getattr(inputs, f.name))})
        assert changed.key != inputs.key, f.name


def test_changing_any_finetuning_input_changes_the_cell_id():
    inputs = FinetuneInputs.from_config(cells(image_diversity_spec())[1])
    for f in fields(FinetuneInputs):
        if f.name == "pretrained":
            changed = replace(inputs, pretrained=replace(inputs.pretrained, seed=7))
        else:
            changed = replace(inputs, **{f.name: different(getattr(inputs, f.name))})
        assert changed.key != inputs.key, f.name


def test_every_config_key_that_is_not_bookkeeping_changes_the_cell_id():
    config = cells(image_diversity_spec())[1]
    assert config["pretrain_epochs"] > 0  # a pre-training cell: every key is in use
    for key, value in config.items():
        if key in NON_RESULT_KEYS:
            assert cell_id({**config, key: different(value)}) == config["cell_id"], key
        else:
            assert cell_id({**config, key: different(value)}) != config["cell_id"], key


def test_cells_differing_only_in_intervention_params_never_share_a_pretrained_model():
    """k=5 classes at budget 100 and at budget 300: the bug was one cached model for both."""
    grid = [c for c in cells(image_diversity_spec()) if c["intervention"] == "classes" and c["value"] == 5]
    assert [json.loads(c["intervention_params"]) for c in grid] == [{"budget": 100}, {"budget": 300}]
    assert pretrain_id(grid[0]) != pretrain_id(grid[1]) and grid[0]["cell_id"] != grid[1]["cell_id"]


def test_cells_record_the_schema_and_full_per_source_and_targets():
    spec = SweepSpec(name="t", sources=("synthnet", "fractaldb"), archs=("resnet18",), recipe=EMBEDDED_RECIPE,
                     baselines=("scratch", "full"), intervention="quantity", values=(100,),
                     targets=(Target("synthdomains-real", "synthdomains", {"domain": "real"}),
                              Target("synthdomains-sketch", "synthdomains", {"domain": "sketch"})))
    grid = cells(spec)
    assert all(c["schema"] == SCHEMA for c in grid)
    per_target = [(c["target"], c["source"], c["intervention"]) for c in grid]
    assert per_target == [(t, s, i) for t in ("synthdomains-real", "synthdomains-sketch")
                          for s, i in (("none", "scratch"), ("synthnet", "full"), ("fractaldb", "full"),
                                       ("synthnet", "quantity"), ("fractaldb", "quantity"))]
    # the same pre-trained model serves both targets (same pre-training inputs), the cells differ
    full = [c for c in grid if c["intervention"] == "full" and c["source"] == "synthnet"]
    assert pretrain_id(full[0]) == pretrain_id(full[1]) and full[0]["cell_id"] != full[1]["cell_id"]
    assert json.loads(full[1]["target_options"]) == {"domain": "sketch"} and full[1]["target_source"] == "synthdomains"
    only = cells(replace(spec, full_sources=("fractaldb",)))
    assert {c["source"] for c in only if c["intervention"] == "full"} == {"fractaldb"}


def test_reference_recipe_is_pytorchs_imagenet_recipe_and_wilds():
    from engine.loops import pretrain_optimizer

    r = REFERENCE_RECIPE
    assert (r.pretrain_epochs, r.pretrain_batch_size, r.pretrain_lr, r.pretrain_momentum, r.pretrain_weight_decay) \
        == (90, 256, 0.1, 0.9, 1e-4)
    assert r.pretrain_lr_for("alexnet") == 0.01 and r.pretrain_lr_for("mobilenet_v3_large") == 0.1
    assert (r.pretrain_crop_scale, r.pretrain_eval_crop, r.bn_momentum) == (0.08, 0.875, None)
    assert (r.pretrain_precision, r.finetune_precision) == ("bf16", "fp32")
    assert (r.finetune_optimizer, r.finetune_lr, r.finetune_weight_decay, r.finetune_batch_size,
            r.finetune_epochs, r.finetune_resolution) == ("adam", 3e-5, 0.0, 16, 12, 448)
    config = cells(SweepSpec(name="t", sources=("imagenet",), archs=("alexnet",), intervention="quantity",
                             values=(5000,), recipe=r))[1]
    inputs = PretrainInputs.from_config(config)
    assert inputs.lr == 0.01
    # lr x0.1 at epochs 30 and 60 of 90 (pytorch/examples imagenet/main.py's StepLR(30, 0.1))
    model = torch.nn.Linear(2, 2)
    optimizer, scheduler = pretrain_optimizer(model, replace(inputs, lr=0.1), steps_per_epoch=10)
    lrs = []
    for _ in range(90 * 10):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[0] == pytest.approx(0.1) and lrs[299] == pytest.approx(0.1)
    assert lrs[300] == pytest.approx(0.01) and lrs[599] == pytest.approx(0.01) and lrs[600] == pytest.approx(0.001)


def test_bn_momentum_is_the_architectures_own_unless_set():
    from engine.archs import build_model

    def momenta(model):
        return {m.momentum for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)}

    assert momenta(build_model("mobilenet_v3_small", 3, 32)) == {0.01}  # torchvision's MobileNet-V3
    assert momenta(build_model("resnet18", 3, 32)) == {0.1}
    assert momenta(build_model("mobilenet_v3_small", 3, 32, bn_momentum=0.1)) == {0.1}


def test_precision_is_checked_never_a_silent_fallback():
    from engine.loops import PrecisionError, autocast, check_precision

    check_precision("fp32", torch.device("cpu"))
    check_precision("bf16", torch.device("cpu"))
    with pytest.raises(PrecisionError, match="fp16 needs a CUDA GPU"):
        check_precision("fp16", torch.device("cpu"))
    with autocast(torch.device("cpu"), "bf16"):
        assert torch.nn.Linear(4, 4)(torch.ones(1, 4)).dtype == torch.bfloat16
    with autocast(torch.device("cpu"), "fp32"):
        assert torch.nn.Linear(4, 4)(torch.ones(1, 4)).dtype == torch.float32


def test_fp16_on_cpu_trials_is_refused_before_ray(tmp_path):
    from engine.runner import RunOptions, SweepError, validate

    spec = SweepSpec(name="t", sources=("synthnet",), archs=("resnet18",), intervention="quantity", values=(100,),
                     recipe=replace(EMBEDDED_RECIPE, finetune_precision="fp16"))
    with pytest.raises(SweepError, match="fp16 needs GPU trials"):
        validate(spec, RunOptions(storage_path=str(tmp_path)))


def test_a_grid_entry_the_source_cannot_fill_is_dropped_with_a_line(capsys, tmp_path):
    from engine.runner import RunOptions, SweepError, validate

    spec = SweepSpec(name="t", sources=("synthnet",), archs=("resnet18",), intervention="quantity",
                     values=(100, 10**6), recipe=EMBEDDED_RECIPE,
                     source_options={"synthnet": {"num_classes": 5, "images_per_class": 40}})
    plan = validate(spec, RunOptions(storage_path=str(tmp_path)))
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("dropped")]
    assert len(lines) == 1 and "synthnet/quantity=1000000" in lines[0] and "class-balanced images need" in lines[0]
    assert sorted(str(c["value"]) for c in plan.grid) == ["100", "None"]
    assert plan.dropped == lines
    with pytest.raises(SweepError, match="every value of its interventions was dropped"):
        validate(replace(spec, values=(10**6,)), RunOptions(storage_path=str(tmp_path)))


def test_flags_select_part_of_the_grid():
    spec = SweepSpec(name="t", sources=("imagenet", "inat2017"), archs=("resnet18",), baselines=("scratch", "full"),
                     arms=(Arm("quantity", (5000, 25000)), Arm("depth", (2, 4), sources=("imagenet",))))
    args = parser("t").parse_args(["--sources", "inat2017", "--values", "25000"])
    picked = cells(apply_flags(spec, args))
    assert {(c["source"], c["intervention"], c["value"]) for c in picked} == {
        ("none", "scratch", None), ("inat2017", "full", None), ("inat2017", "quantity", 25000)}
    with pytest.raises(ValueError, match="--sources imagenet1k: 'imagenet1k' is not in this sweep; choose from "
                                         "imagenet, inat2017"):
        apply_flags(spec, parser("t").parse_args(["--sources", "imagenet1k"]))
    with pytest.raises(ValueError, match="--values 7: 7 is not in this sweep"):
        apply_flags(spec, parser("t").parse_args(["--values", "7"]))
    assert parser("t").parse_args(["--values", "0.33,animal,5"]).values == (0.33, "animal", 5)


@pytest.mark.parametrize("argv, message", [
    (["--seeds", "0"], "argument --seeds: must be an integer >= 1, got 0"),
    (["--seeds", "-1"], "argument --seeds: must be an integer >= 1, got -1"),
    (["--seed", "2"], "unrecognized arguments: --seed (did you mean --seeds?)"),
    (["--cpus-per-trial", "0"], "argument --cpus-per-trial: must be a number > 0, got 0"),
    (["--smkoe"], "unrecognized arguments: --smkoe (did you mean --smoke?)"),
])
def test_bad_flags_are_one_line_errors(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        parser("t").parse_args(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(err) == 1 and message in err[0], err
    assert isinstance(parser("t"), SweepParser) and not parser("t").allow_abbrev


def test_weights_enter_the_cell_id_by_content_not_path(tmp_path):
    from engine.archs import build_model
    from engine.weights import WeightsError, load_into, load_state_dict, parse_weights

    model = build_model("resnet18", 10, 224)
    torch.save(model.state_dict(), tmp_path / "a.pth")
    (tmp_path / "copy").mkdir()
    torch.save(model.state_dict(), tmp_path / "copy" / "a.pth")
    spec = SweepSpec(name="t", sources=("imagenet",), archs=("resnet18",), baselines=("scratch", "full"),
                     recipe=REFERENCE_RECIPE)
    one = replace(spec, weights=parse_weights(str(tmp_path / "a.pth"), "imagenet", ("resnet18",)))
    two = replace(spec, weights=parse_weights(f"imagenet:resnet18={tmp_path / 'copy' / 'a.pth'}", "imagenet",
                                              ("resnet18",)))
    full_one, full_two = cells(one)[1], cells(two)[1]
    assert full_one["pretrain_weights"] == full_two["pretrain_weights"] and full_one["cell_id"] == full_two["cell_id"]
    assert full_one["pretrain_epochs"] == 0 and full_one["pretrain_lr"] is None  # nothing is trained
    assert full_one["cell_id"] != cells(spec)[1]["cell_id"]
    state = load_state_dict(tmp_path / "a.pth")
    load_into(build_model("resnet18", 10, 224), state, "a.pth", "resnet18")
    with pytest.raises(WeightsError, match="a.pth: not a checkpoint of resnet50 .*key"):
        load_into(build_model("resnet50", 10, 224), state, "a.pth", "resnet50")
    torch.save({"not": object()}, tmp_path / "pickle.pth")  # an arbitrary pickle: never loaded
    with pytest.raises(WeightsError, match="not a weights-only PyTorch checkpoint"):
        load_state_dict(tmp_path / "pickle.pth")
    with pytest.raises(WeightsError, match="is not a file"):
        parse_weights("resnet18=/nowhere.pth", "imagenet", ("resnet18",))


def test_other_schemas_are_reported_not_silently_rerun(tmp_path, capsys):
    from engine.runner import report_other_schemas

    sweep = tmp_path / "sweeps" / "demo"
    old = sweep / "exp-000"
    old.mkdir(parents=True)
    trial = json.dumps({"config": {"cell_id": "abc", "arch": "resnet18"}})  # schema 1 wrote no schema key
    (old / "experiment_state-2026-01-01_00-00-00.json").write_text(json.dumps({"trial_data": [[trial, "{}"]] * 3}))
    (tmp_path / "sweeps" / "pretrained" / "k1").mkdir(parents=True)
    (tmp_path / "sweeps" / "pretrained" / "k1" / "meta.json").write_text(json.dumps({"pretrain_id": "k1"}))
    (tmp_path / "sweeps" / "pretrained" / "k2").mkdir()
    (tmp_path / "sweeps" / "pretrained" / "k2" / "meta.json").write_text(json.dumps({"schema": SCHEMA}))
    assert report_other_schemas(sweep, tmp_path / "sweeps") == {Location.of(old)}  # a path or an s3:// location
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    assert f"3 cells were recorded under config schema 1 (this version writes schema {SCHEMA})" in lines[0]
    assert "not reused" in lines[0] and "1 pre-trained models were made under an older config schema" in lines[1]


def test_clip_architectures_build_and_learn_contrastively():
    from engine.archs import build_model, output_size, replace_head
    from engine.clip import ClipPretraining

    model = build_model("clip_vit_tiny", 7, 32)
    assert output_size(model, 32) == (1, 7)
    replace_head(model, "clip_vit_tiny", 3)
    assert output_size(model, 32) == (1, 3)
    torch.manual_seed(0)
    clip = ClipPretraining("clip_vit_tiny", 32, ["tench", "goldfish", "tiger shark", "hammerhead"])
    images = torch.randn(4, 3, 32, 32).repeat(4, 1, 1, 1) + 0.1 * torch.randn(16, 3, 32, 32)
    labels = torch.arange(4).repeat(4)
    optimizer = torch.optim.AdamW(clip.parameters(), lr=1e-3)
    losses = []
    for _ in range(25):
        loss = clip.contrastive_loss(images, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    assert (clip(images).argmax(1) == labels).float().mean() > 0.9  # zero-shot: images find their captions
    assert output_size(clip.classifier(4), 32) == (1, 4)


def test_given_weights_are_stored_as_the_pretrained_model_without_training(tmp_path):
    """`pretrain` with weights: nothing trained, the checkpoint stored under the inputs' key; a CLIP
    checkpoint (open_clip's state dict of the whole model) becomes an image classifier."""
    from engine.archs import build_model, output_size
    from engine.clip import build_clip
    from engine.pretrain import RunContext, pretrain
    from engine.weights import file_sha256

    torch.save(build_model("resnet18", 1000, 224).state_dict(), tmp_path / "r18.pth")
    torch.save(build_clip("clip_vit_mini", 32).state_dict(), tmp_path / "clip.pt")
    for arch, file, classes in (("resnet18", "r18.pth", 1000), ("clip_vit_mini", "clip.pt", 1)):
        sha = file_sha256(tmp_path / file)
        from engine.spec import Weights

        spec = SweepSpec(name="t", sources=("imagenet",), archs=(arch,), baselines=("full",), recipe=REFERENCE_RECIPE,
                         weights=(Weights("imagenet", arch, str(tmp_path / file), sha),))
        inputs = PretrainInputs.from_config(cells(spec)[0])
        assert inputs.weights == sha and inputs.epochs == 0
        context = RunContext(storage=str(tmp_path / "storage"), data_root=None, cache_dir=str(tmp_path / "cache"),
                             git_sha="test", weights=((sha, str(tmp_path / file)),))
        rows = []
        state, meta = pretrain(inputs, context, cpus=1, device=torch.device("cpu"), report=rows.append)
        assert rows == [] and meta["epochs"] == 0 and meta["weights"]["sha256"] == sha  # loaded, not trained
        assert meta["subset"]["num_classes"] == classes and meta["schema"] == SCHEMA
        model = build_model(arch, classes, 32)
        if arch.startswith("clip"):
            from open_clip.model import resize_pos_embed

            resize_pos_embed(state, model)
        model.load_state_dict(state)
        assert output_size(model, 32) == (1, classes)
