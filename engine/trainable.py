"""The Tune trainable: one cell = pre-train (cached, checkpointed every epoch), then fine-tune.

The cell's config is read once into `FinetuneInputs` (which holds its `PretrainInputs`): what the
phases read is exactly what the cell id hashes. Fine-tuning reports DESIGN.md's metrics to Tune
after every epoch, with a checkpoint holding the model, optimizer, scheduler, gradient scaler,
epoch and RNG state, so a restarted trial continues where it stopped. Pre-training keeps its
per-epoch state in the pre-trained cache (`engine.pretrain`).
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from ray import tune

from datasets import get_source
from datasets.storage.loaders import shared_loader
from engine.archs import build_model, get_arch, replace_head
from engine.inputs import FinetuneInputs
from engine.loops import (
    check_precision,
    eval_batch_size,
    evaluate,
    finetune_optimizer,
    grad_scaler,
    restore_training_state,
    train_epoch,
    training_state,
)
from engine.predictions import read_log, write_log
from engine.pretrain import FAULT_ENV, RunContext, maybe_fault, pretrain
from engine.provenance import package_versions
from engine.row_ledger import REPLAYED
from datasets.storage.location import Location
from engine.threads import set_trial_threads

__all__ = ["FAULT_ENV", "RunContext", "train_cell"]


class TrialResourceError(RuntimeError):
    """A trial that cannot use the resources it was given; one line naming the node."""


def _resources() -> tuple[int, int]:
    """(CPUs, GPUs) Tune gave this trial."""
    required = tune.get_context().get_trial_resources().required_resources
    return max(1, int(required.get("CPU", 1))), int(np.ceil(required.get("GPU", 0)))


def _device(gpus: int) -> torch.device:
    """The trial's device: a GPU when it was given one; a GPU it cannot see is an error, never the CPU."""
    if not gpus:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        import socket

        raise TrialResourceError(f"this trial was given {gpus} GPU(s) but torch sees no CUDA device on node "
                                 f"{socket.gethostname()} (CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r}); "
                                 "check the node's driver and torch build, or run with --gpus-per-trial 0")
    return torch.device("cuda")


def _read_record(checkpoint) -> dict:
    with checkpoint.filesystem.open_input_stream(f"{checkpoint.path}/cell.json") as f:
        return json.loads(f.read())


class CorruptCheckpoint(RuntimeError):
    """The checkpoint Tune restores a cell from cannot be read; one line naming the cell and the path."""


def _load(checkpoint) -> tuple[dict, dict]:
    with checkpoint.as_directory() as directory:
        state = torch.load(Path(directory) / "state.pt", map_location="cpu", weights_only=True)
        record = json.loads((Path(directory) / "cell.json").read_text())
    if state["epoch"] != len(record["history"]):
        raise ValueError(f"state.pt holds epoch {state['epoch']} but cell.json {len(record['history'])} epochs")
    return state, record


def _resume_point(cell: str) -> tuple[dict | None, dict | None]:
    """(state, record) of this trial's newest complete fine-tuning checkpoint, or (None, None).

    Tune restores a trial from the checkpoint its last experiment snapshot knew. A driver killed
    between a report and the next snapshot leaves a newer checkpoint in the trial directory that
    Tune does not know: taking it means that epoch is not trained again (and a finished cell is
    not re-run). Such a newer checkpoint cut short by the kill fails to load and is skipped. The
    checkpoint Tune knows was complete when it was reported: when it cannot be read and nothing
    newer can, the cell stops with `CorruptCheckpoint` rather than train its epochs a second time.
    """
    import pyarrow.fs

    known = tune.get_checkpoint()
    candidates = [known] if known else []
    try:
        storage = tune.get_context().get_storage()  # Ray developer API: the trial's storage paths
        infos = storage.storage_filesystem.get_file_info(
            pyarrow.fs.FileSelector(storage.trial_fs_path, allow_not_found=True))
        candidates += [tune.Checkpoint(i.path, storage.storage_filesystem) for i in infos
                       if i.type == pyarrow.fs.FileType.Directory and i.base_name.startswith("checkpoint_")
                       and (known is None or i.path != known.path)]
    except Exception:  # noqa: BLE001 - outside a Tune session: Tune's own view is all there is
        pass
    ranked = []
    for checkpoint in candidates:
        try:
            ranked.append((len(_read_record(checkpoint)["history"]), checkpoint))
        except Exception:  # noqa: BLE001 - half-written when its run was killed; the known one is checked below
            continue
    for _, checkpoint in sorted(ranked, key=lambda r: -r[0]):
        try:
            return _load(checkpoint)
        except Exception:  # noqa: BLE001
            continue
    if known is not None:
        try:
            _load(known)
        except Exception as error:  # noqa: BLE001 - any reason it cannot be read: say which and where
            why = f"{type(error).__name__}: {error}".replace("\n", " ")
            raise CorruptCheckpoint(f"cell {cell}: its checkpoint {known.path} cannot be read ({why}); its epochs "
                                    "are not trained a second time: re-run with --fresh to start the sweep over (the "
                                    "finished cells stay in <sweep>.old-*)") from None
    return None, None


def _replay_rows(history: list[dict]) -> None:
    """Report the checkpoint's fine-tuning rows again, marked: the driver logs those its copy of the
    trial's result.json lacks (a driver killed before uploading them) and drops the rest
    (`engine.row_ledger`)."""
    for row in history:
        tune.report({**row, REPLAYED: True})


def _pretrained_model(inputs: FinetuneInputs, context: RunContext, cpus: int, device: torch.device,
                      num_classes: int) -> tuple[torch.nn.Module, dict]:
    """The cell's pre-trained model with a fresh `num_classes` head, and its description."""
    weights, meta = pretrain(inputs.pretrained, context, cpus, device, report=tune.report)
    model = build_model(inputs.arch, meta["subset"]["num_classes"], inputs.resolution, inputs.bn_momentum)
    if get_arch(inputs.arch).family == "clip":  # a ViT's position embedding follows the input size
        from open_clip.model import resize_pos_embed

        resize_pos_embed(weights, model)
    model.load_state_dict(weights)
    torch.manual_seed(inputs.seed)
    return replace_head(model, inputs.arch, num_classes), meta


def train_cell(config: dict, context: RunContext) -> None:
    """Tune function trainable for one cell."""
    # A node's own SWEEPS_CACHE (set where its Ray was started) wins: each node keeps its `.beton` files
    # on its own disk, built once per node under a file lock (datasets.storage.beton.ensure_beton).
    os.environ.setdefault("SWEEPS_CACHE", context.cache_dir)
    inputs = FinetuneInputs.from_config(config)
    state, saved_record = _resume_point(config["cell_id"])
    if saved_record is not None:
        _replay_rows(saved_record["history"])
        if state["epoch"] >= inputs.epochs:
            return  # finished before the driver died: nothing to redo
    cpus, gpus = _resources()
    threads = set_trial_threads(cpus)
    device = _device(gpus)
    speed = context.speed.apply(device)
    check_precision(inputs.precision, device)
    if inputs.pretrained is not None and inputs.pretrained.precision is not None:
        check_precision(inputs.pretrained.precision, device)

    target = get_source(inputs.target_source, context.data_root, **inputs.options())
    res = inputs.resolution
    torch.manual_seed(inputs.seed)
    pretrained_meta = saved_record["pretrained"] if saved_record else None
    if inputs.pretrained is not None and state is None:  # a resumed cell has its weights in `state`
        model, pretrained_meta = _pretrained_model(inputs, context, cpus, device, target.num_classes)
    else:
        model = build_model(inputs.arch, target.num_classes, res, inputs.bn_momentum)
    model = context.speed.prepare(model, device)

    files = {split: target.beton(split, res, cpus) for split in target.splits}
    train_loader = shared_loader(files["train"], inputs.batch_size, res, cpus, train=True, seed=inputs.seed,
                                 device=str(device))
    sets = target.evaluation_sets()
    eval_loaders = {split: shared_loader(files[split], eval_batch_size(inputs.batch_size), res, cpus, train=False,
                                         device=str(device))
                    for split in dict.fromkeys(split for split, _ in sets.values())}
    optimizer, scheduler = finetune_optimizer(model, inputs, len(train_loader))
    scaler = grad_scaler(device, inputs.precision)

    start = restore_training_state(state, model, optimizer, scheduler, scaler) if state is not None else 0

    record = {"config": config, "inputs": asdict(inputs), "pretrained": pretrained_meta, "target": target.describe(),
              "provenance": {"git_sha": context.git_sha, "packages": package_versions(), "speed": speed,
                             "threads": threads,
                             "data_files": {s: Path(f).name for s, f in files.items()}},
              "history": saved_record["history"] if saved_record else []}
    # the pre-training subset's size travels with every row, so reports can show it (None for scratch)
    subset = (pretrained_meta or {}).get("subset", {})
    subset_size = {"subset_images": subset.get("num_images"), "subset_classes": subset.get("num_classes")}
    storage = tune.get_context().get_storage()  # per-example predictions go beside result.json (engine.predictions)
    predictions = read_log(storage.storage_filesystem, storage.trial_fs_path, target.num_classes, start)
    for epoch in range(start, inputs.epochs):
        maybe_fault("finetune", epoch + 1, Location.of(context.storage) / ".faults" / config["cell_id"])
        train_loader.next_epoch = epoch
        stats = train_epoch(model, train_loader, optimizer, scheduler, None, device, inputs.precision, scaler)
        predicted: dict = {}
        metrics = evaluate(model, eval_loaders, device, sets=sets, precision=inputs.precision, predictions=predicted)
        predictions.add(epoch + 1, predicted)
        write_log(predictions, storage.storage_filesystem, storage.trial_fs_path)
        row = {"phase": "finetune", "epoch": epoch + 1, **stats, **metrics, **subset_size,
               "cell_id": config["cell_id"], "git_sha": context.git_sha}
        record["history"].append(row)
        with tempfile.TemporaryDirectory() as tmp:
            torch.save(training_state(model, optimizer, scheduler, scaler, epoch + 1), Path(tmp) / "state.pt")
            (Path(tmp) / "cell.json").write_text(json.dumps(record, indent=1, default=str))
            tune.report(row, checkpoint=tune.Checkpoint.from_directory(tmp))
