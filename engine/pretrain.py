"""The pre-training phase: one cached model per `PretrainInputs`, checkpointed every epoch.

`pretrain(inputs, context, cpus, device)` returns the pre-trained classifier's weights and their
description from `<storage>/pretrained/<inputs.key>/`, training them first when missing. The key
hashes every field of `inputs`, so a model is reused exactly when all its inputs agree, whichever
sweep or experiment asks (a `full` baseline pre-trained once serves every sweep). One trial
trains it under a file lock; the others wait, then load it. `state.pt` holds the last finished
epoch, so a killed trial loses at most the epoch in flight.

Objectives (`OBJECTIVES`): `supervised` (cross-entropy on the subset's labels) and `clip`
(contrastive image-caption learning, `engine.clip`); or no training at all when the cell has
given weights (`--weights`), which are loaded with `weights_only=True` and stored the same way.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from filelock import FileLock, Timeout
from torch import nn

from datasets.storage.atomic import atomic_write
from engine.archs import build_model, get_arch, head_classes
from engine.inputs import SCHEMA, PretrainInputs
from engine.loops import (
    cross_entropy_step,
    eval_batch_size,
    evaluate,
    grad_scaler,
    pretrain_optimizer,
    restore_training_state,
    train_epoch,
    training_state,
)
from engine.speed import Speed
from engine.weights import load_into, load_state_dict

FAULT_ENV = "SWEEPS_FAULT_AT"  # testing hook: "pretrain:2" raises once before pre-training epoch 2


@dataclass(frozen=True)
class RunContext:
    """What a trial needs that does not change its result (never part of a hash)."""

    storage: str              # the storage root: holds `pretrained/` and the sweep directories
    data_root: str | None
    cache_dir: str            # the driver's `.beton` cache: a trial's when its node sets no SWEEPS_CACHE
    git_sha: str
    weights: tuple[tuple[str, str], ...] = ()   # (sha256, path) of every given checkpoint
    pretrain_wait_s: float = 24 * 3600          # how long to wait for another trial pre-training the same model
    speed: Speed = Speed()                      # cudnn.benchmark, torch.compile, --deterministic


@dataclass(frozen=True)
class Objective:
    """How a pre-training objective builds its model, scores a batch, and exports a classifier."""

    model: Callable[[PretrainInputs, list[str]], nn.Module]     # (inputs, the subset's class ids) -> model
    step_loss: Callable                                         # (model, images, labels) -> loss
    export: Callable[[nn.Module, int], nn.Module]               # (trained model, classes) -> classifier


def _supervised_model(inputs: PretrainInputs, classes: list[str]) -> nn.Module:
    return build_model(inputs.arch, len(classes), inputs.resolution, inputs.bn_momentum)


def _clip_model(inputs: PretrainInputs, classes: list[str]) -> nn.Module:
    from engine.clip import ClipPretraining, class_names

    if get_arch(inputs.arch).family != "clip":
        raise ValueError(f"the clip objective needs a CLIP architecture (clip_vit_mini, clip_vit_tiny, clip_vit_small or an open_clip "
                         f"name), not {inputs.arch}")
    return ClipPretraining(inputs.arch, inputs.resolution, class_names(classes))


OBJECTIVES: dict[str, Objective] = {
    "supervised": Objective(_supervised_model, cross_entropy_step, lambda model, classes: model),
    "clip": Objective(_clip_model, lambda model, images, labels: model.contrastive_loss(images, labels),
                      lambda model, classes: model.classifier(classes)),
}


def atomic_save(obj, path: Path) -> None:
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def maybe_fault(phase: str, epoch: int, marker_dir: Path) -> None:
    """The `SWEEPS_FAULT_AT` testing hook: raise once (per marker dir) before `phase` epoch `epoch`."""
    spec = os.environ.get(FAULT_ENV, "")
    if spec != f"{phase}:{epoch}":
        return
    marker = marker_dir / f".fault-{phase}-{epoch}"
    if marker.exists():
        return
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.touch()
    raise RuntimeError(f"injected fault before {phase} epoch {epoch} ({FAULT_ENV}={spec})")


def cache_dir(storage: str | Path, inputs: PretrainInputs) -> Path:
    return Path(storage) / "pretrained" / inputs.key


def pretrain(inputs: PretrainInputs, context: RunContext, cpus: int, device: torch.device,
             report: Callable[[dict], None] = lambda row: None) -> tuple[dict, dict]:
    """(classifier state dict, description) of the pre-trained model of `inputs`, trained now if missing.

    `report` receives one row per pre-training epoch (`phase` = "pretrain").
    """
    cache = cache_dir(context.storage, inputs)
    cache.mkdir(parents=True, exist_ok=True)
    model_file, meta_file = cache / "model.pt", cache / "meta.json"
    lock = FileLock(str(cache / ".lock"), timeout=context.pretrain_wait_s)
    try:
        lock.acquire()  # one trial trains it; the others wait, then reuse it
    except Timeout:
        raise PretrainWaitTimeout(
            f"waited {context.pretrain_wait_s / 3600:.3g} h for {cache / '.lock'}, held by another trial pre-training "
            f"the same model ({_holder(cache)}); if it is stuck, stop it, or re-run with a longer --pretrain-wait"
        ) from None
    try:
        atomic_write(cache / ".holder.json", json.dumps(_me()))
        if not model_file.exists():
            if inputs.weights is not None:
                _from_weights(inputs, cache, dict(context.weights))
            else:
                _train(inputs, cache, context, cpus, device, report)
    finally:
        lock.release()
    return torch.load(model_file, map_location="cpu", weights_only=True), json.loads(meta_file.read_text())


class PretrainWaitTimeout(RuntimeError):
    """Another trial held a pre-trained model's lock for longer than `--pretrain-wait`; one line."""


def _me() -> dict:
    import socket

    return {"host": socket.gethostname(), "pid": os.getpid()}


def _holder(cache: Path) -> str:
    try:
        who = json.loads((cache / ".holder.json").read_text())
        return f"pid {who['pid']} on {who['host']}"
    except (OSError, ValueError, KeyError):
        return "holder unknown"


def _finish(cache: Path, inputs: PretrainInputs, classifier: nn.Module, meta: dict) -> None:
    meta = {"schema": SCHEMA, "pretrain_id": inputs.key, "inputs": asdict(inputs), **meta}
    atomic_write(cache / "meta.json", json.dumps(meta, indent=1, default=str))
    atomic_save({k: v.detach().cpu() for k, v in classifier.state_dict().items()}, cache / "model.pt")


def _from_weights(inputs: PretrainInputs, cache: Path, paths: dict[str, str]) -> None:
    if inputs.weights not in paths:
        raise FileNotFoundError(f"pre-trained weights {inputs.weights} were given to the sweep but this trial was "
                                "not told their path; re-run the sweep with the same --weights")
    path = paths[inputs.weights]
    state = load_state_dict(path)
    if get_arch(inputs.arch).family == "clip":
        from engine.clip import image_classifier, load_open_clip_weights

        clip = load_open_clip_weights(inputs.arch, None, state, path)
        classifier, classes = image_classifier(inputs.arch, 1, 0, clip=clip), 1  # the head is replaced for fine-tuning
    else:
        classes = head_classes(state, inputs.arch)
        classifier = build_model(inputs.arch, classes, max(224, get_arch(inputs.arch).min_resolution),
                                 inputs.bn_momentum)
        load_into(classifier, state, path, inputs.arch)
    _finish(cache, inputs, classifier, {
        "subset": {"num_classes": classes, "num_images": None, "source": inputs.source},
        "weights": {"file": Path(path).name, "sha256": inputs.weights}, "epochs": 0,
    })


def _train(inputs: PretrainInputs, cache: Path, context: RunContext, cpus: int, device: torch.device,
           report: Callable[[dict], None]) -> None:
    from datasets import get_source
    from datasets.interventions import build_subset, domain_rows
    from datasets.storage.loaders import shared_loader

    src = get_source(inputs.source, context.data_root, **inputs.options())
    subset = build_subset(src, inputs.intervention, inputs.value, seed=inputs.seed, **inputs.params())
    res, seed = inputs.resolution, inputs.seed
    train_file, val_file = src.beton("train", res, cpus), src.beton(src.holdout_split, res, cpus)
    label_map = torch.as_tensor(subset.label_map, device=device)
    val_labels = subset.label_map[src.labels(src.holdout_split)]
    train_loader = shared_loader(train_file, inputs.batch_size, res, cpus, train=True, indices=subset.indices,
                                 seed=seed, device=str(device), crop_scale=inputs.crop_scale)
    val_rows = np.flatnonzero(val_labels >= 0)
    if subset.description.get("domain") is not None:  # pre-trained on one domain: evaluate on that domain
        val_rows = np.intersect1d(val_rows, domain_rows(src, src.holdout_split, subset.description["domain"]))
    val_loader = shared_loader(val_file, eval_batch_size(inputs.batch_size), res, cpus, train=False,
                               indices=val_rows, device=str(device), crop_ratio=inputs.eval_crop)

    objective = OBJECTIVES[inputs.objective]
    torch.manual_seed(seed)
    model = context.speed.prepare(objective.model(inputs, subset.description["classes"]), device)
    optimizer, scheduler = pretrain_optimizer(model, inputs, len(train_loader))
    scaler = grad_scaler(device, inputs.precision)
    state_file, start = cache / "state.pt", 0
    if state_file.exists():  # a killed trial left its last finished epoch here
        start = restore_training_state(torch.load(state_file, map_location=device, weights_only=True), model,
                                       optimizer, scheduler, scaler)

    for epoch in range(start, inputs.epochs):
        maybe_fault("pretrain", epoch + 1, cache)
        train_loader.next_epoch = epoch  # FFCV's shuffle is seeded by (seed, epoch): resumes the same order
        stats = train_epoch(model, train_loader, optimizer, scheduler, label_map, device, inputs.precision, scaler,
                            objective.step_loss)
        metrics = evaluate(model, {"pretrain_val": val_loader}, device, subset.label_map, precision=inputs.precision)
        atomic_save(training_state(model, optimizer, scheduler, scaler, epoch + 1), state_file)
        report({"phase": "pretrain", "epoch": epoch + 1, "pretrain_loss": stats["train_loss"],
                "images_per_s": stats["images_per_s"], **metrics})

    _finish(cache, inputs, objective.export(model, subset.num_classes), {
        "subset": subset.description, "holdout_images": int(len(val_rows)), "source": src.describe(),
        "epochs": inputs.epochs, "data_files": {"train": Path(train_file).name, "val": Path(val_file).name},
        "speed": context.speed.record(device),
    })
    state_file.unlink(missing_ok=True)
