"""The pre-training phase: one cached model per `PretrainInputs`, checkpointed every epoch.

`pretrain(inputs, context, cpus, device)` returns the pre-trained classifier's weights and their
description from `<storage>/pretrained/<inputs.key>/`, training them first when missing. The key
hashes every field of `inputs`, so a model is reused exactly when all its inputs agree, whichever
sweep or experiment asks (a `full` baseline pre-trained once serves every sweep). One trial
trains it under a lock; the others wait, then load it. `state.pt` holds the last finished
epoch, so a killed trial loses at most the epoch in flight (or the last one, when killed between
its report and the model file written at once after it).

The cache lies wherever the storage does (`datasets.storage.location`): on a filesystem the lock is a file
lock (`<key>/.lock`, which needs a filesystem whose locks reach every node: local, NFSv4, EFS,
Lustre); on `s3://` it is a lease (`<key>/.lock`, `engine.object_lock`) that the training trial
renews, so a trial lost with its node frees it within the lease, and the next trial resumes from
`state.pt` on the store. Workers that share no disk therefore find every model.

Objectives (`OBJECTIVES`): `supervised` (cross-entropy on the subset's labels) and `clip`
(contrastive image-caption learning, `engine.clip`); or no training at all when the cell has
given weights (`--weights`), which are loaded with `weights_only=True` and stored the same way.
"""
from __future__ import annotations

import contextlib
import json
import os
import time
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
from datasets.storage.location import Location
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


def maybe_fault(phase: str, epoch: int, marker_dir: Path | Location) -> None:
    """The `SWEEPS_FAULT_AT` testing hook: raise once (per marker dir) before `phase` epoch `epoch`."""
    spec = os.environ.get(FAULT_ENV, "")
    if spec != f"{phase}:{epoch}":
        return
    marker = Location.of(marker_dir) / f".fault-{phase}-{epoch}"
    if marker.exists():
        return
    marker.write_bytes(b"")
    raise RuntimeError(f"injected fault before {phase} epoch {epoch} ({FAULT_ENV}={spec})")


def cache_dir(storage: str | Path | Location, inputs: PretrainInputs) -> Location:
    return Location.of(storage) / "pretrained" / inputs.key


def pretrain(inputs: PretrainInputs, context: RunContext, cpus: int, device: torch.device,
             report: Callable[[dict], None] = lambda row: None) -> tuple[dict, dict]:
    """(classifier state dict, description) of the pre-trained model of `inputs`, trained now if missing.

    `report` receives one row per pre-training epoch (`phase` = "pretrain").
    """
    cache = cache_dir(context.storage, inputs)
    cache.mkdir()
    model_file, meta_file = cache / "model.pt", cache / "meta.json"
    if not model_file.exists():  # finished models are read without the lock: they never change
        with _training_lock(cache, context.pretrain_wait_s) as lock:  # one trial trains it; the others wait
            if not model_file.exists():
                if inputs.weights is not None:
                    _from_weights(inputs, cache, dict(context.weights))
                else:
                    _train(inputs, cache, context, cpus, device, report, lock)
    return model_file.load_torch(), json.loads(meta_file.read_text())


class PretrainWaitTimeout(RuntimeError):
    """Another trial held a pre-trained model's lock for longer than `--pretrain-wait`; one line."""


class PretrainLockLost(RuntimeError):
    """A trial pre-training on object storage lost its lease (cut off from the store for longer than it)."""


def _timeout_message(lock: str, wait_s: float, holder: str) -> str:
    return (f"waited {wait_s / 3600:.3g} h for {lock}, held by another trial pre-training the same model ({holder}); "
            "if it is stuck, stop it, or re-run with a longer --pretrain-wait")


@contextlib.contextmanager
def _training_lock(cache: Location, wait_s: float):
    """Hold `<cache>/.lock` (a file lock, or a lease on object storage); yields the lease or None."""
    if cache.remote:
        yield from _lease(cache, wait_s)
        return
    path = cache.path / ".lock"
    lock = FileLock(str(path), timeout=wait_s)
    try:
        lock.acquire()
    except Timeout:
        raise PretrainWaitTimeout(_timeout_message(str(path), wait_s, _holder(cache))) from None
    try:
        atomic_write(cache.path / ".holder.json", json.dumps(_me()))
        yield None
    finally:
        lock.release()


POLL_S = 5.0   # how often a trial waiting for another's pre-training on object storage looks again


def _lease(cache: Location, wait_s: float):
    from engine.object_lock import LEASE_S, LeaseLock, LockHeld

    lease = LeaseLock(cache / ".lock", _me(), float(os.environ.get("SWEEPS_LEASE_S", LEASE_S)))
    deadline = time.monotonic() + wait_s
    while True:
        try:
            lease.try_acquire()
            break
        except LockHeld as held:
            if (cache / "model.pt").exists() or time.monotonic() >= deadline:
                if (cache / "model.pt").exists():  # trained meanwhile: nothing to hold the lock for
                    yield None
                    return
                who = f"pid {held.holder.get('pid')} on {held.holder.get('host')}"
                raise PretrainWaitTimeout(_timeout_message(str(cache / ".lock"), wait_s, who)) from None
            time.sleep(min(POLL_S, max(0.0, deadline - time.monotonic())))
    try:
        yield lease
    finally:
        lease.release()


def _me() -> dict:
    import socket

    return {"host": socket.gethostname(), "pid": os.getpid()}


def _holder(cache: Location) -> str:
    try:
        who = json.loads((cache / ".holder.json").read_text())
        return f"pid {who['pid']} on {who['host']}"
    except (OSError, ValueError, KeyError):
        return "holder unknown"


def _finish(cache: Location, inputs: PretrainInputs, classifier: nn.Module, meta: dict) -> None:
    """meta.json, then model.pt: a model file present means a complete entry."""
    meta = {"schema": SCHEMA, "pretrain_id": inputs.key, "inputs": asdict(inputs), **meta}
    (cache / "meta.json").write_text(json.dumps(meta, indent=1, default=str))
    (cache / "model.pt").save_torch({k: v.detach().cpu() for k, v in classifier.state_dict().items()})


def _from_weights(inputs: PretrainInputs, cache: Location, paths: dict[str, str]) -> None:
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


def _train(inputs: PretrainInputs, cache: Location, context: RunContext, cpus: int, device: torch.device,
           report: Callable[[dict], None], lease=None) -> None:
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
        start = restore_training_state(state_file.load_torch(map_location=device), model, optimizer, scheduler, scaler)

    for epoch in range(start, inputs.epochs):
        if lease is not None and lease.lost:  # another trial took the model over: it must not be written twice
            raise PretrainLockLost(f"pre-training {cache}: {lease.lost}; this trial stops (Tune retries it)")
        maybe_fault("pretrain", epoch + 1, cache)
        train_loader.next_epoch = epoch  # FFCV's shuffle is seeded by (seed, epoch): resumes the same order
        stats = train_epoch(model, train_loader, optimizer, scheduler, label_map, device, inputs.precision, scaler,
                            objective.step_loss)
        metrics = evaluate(model, {"pretrain_val": val_loader}, device, subset.label_map, precision=inputs.precision)
        if epoch + 1 < inputs.epochs:  # after the last epoch `_finish` writes the model itself, then drops the state
            state_file.save_torch(training_state(model, optimizer, scheduler, scaler, epoch + 1))
        report({"phase": "pretrain", "epoch": epoch + 1, "pretrain_loss": stats["train_loss"],
                "images_per_s": stats["images_per_s"], **metrics})

    _finish(cache, inputs, objective.export(model, subset.num_classes), {
        "subset": subset.description, "holdout_images": int(len(val_rows)), "source": src.describe(),
        "epochs": inputs.epochs, "data_files": {"train": Path(train_file).name, "val": Path(val_file).name},
        "speed": context.speed.record(device),
    })
    state_file.delete()
