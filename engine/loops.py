"""Training and evaluation loops, the optimisers of both phases, and the numeric precision.

Pre-training follows PyTorch's ImageNet reference recipe (SGD, momentum 0.9, weight decay 1e-4,
lr 0.1 per 256 images, x0.1 at 1/3 and 2/3 of the epochs) or a warm-up + cosine schedule for short
CPU runs; contrastive (CLIP-style) pre-training uses AdamW. Fine-tuning follows WILDS' iWildCam
defaults (Adam, constant lr, no weight decay; AdamW for CLIP encoders). Schedules step per
iteration so a resumed epoch continues the same curve.

Precision is a cell's config key (`pretrain_precision`, `finetune_precision`): fp32, bf16 or fp16
autocast; fp16 always with a `GradScaler`. A device that cannot run the chosen precision is an
error (`check_precision`), never a silent fallback. This module needs neither Ray nor FFCV.
"""
from __future__ import annotations

import math
import time
from typing import Callable

import numpy as np
import torch
from torch import nn

from analysis.metrics import accuracy, macro_f1

AUTOCAST_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class PrecisionError(RuntimeError):
    """The device cannot run the cell's precision; one line naming the device and the fix."""


def check_precision(precision: str, device: torch.device) -> None:
    """Raise PrecisionError unless `device` can run `precision` (fp32 runs everywhere)."""
    if precision not in AUTOCAST_DTYPES:
        raise PrecisionError(f"precision {precision!r} is not one of {', '.join(AUTOCAST_DTYPES)}")
    if precision == "fp16" and device.type != "cuda":
        raise PrecisionError(f"precision fp16 needs a CUDA GPU (this trial runs on {device.type}); use bf16 or fp32, "
                             "or give the trials GPUs (--gpus-per-trial)")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        name = torch.cuda.get_device_name(device)
        raise PrecisionError(f"precision bf16 is not supported by {name}; set the recipe's precision to fp16 or fp32")


def autocast(device: torch.device, precision: str):
    dtype = AUTOCAST_DTYPES[precision]
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


def grad_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler:
    """A GradScaler that is active for fp16 only (a no-op otherwise, so checkpoints look alike)."""
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")


def pretrain_optimizer(model: nn.Module, inputs, steps_per_epoch: int):
    """(optimizer, per-step scheduler) of a pre-training phase (`engine.inputs.PretrainInputs`)."""
    if inputs.optimizer == "adamw":
        optimizer = torch.optim.AdamW(model.parameters(), lr=inputs.lr, weight_decay=inputs.weight_decay)
    else:
        optimizer = torch.optim.SGD(model.parameters(), lr=inputs.lr * inputs.batch_size / 256,
                                    momentum=inputs.momentum, weight_decay=inputs.weight_decay)
    total = max(1, inputs.epochs * steps_per_epoch)
    warmup = min(steps_per_epoch, total // 10)
    if inputs.schedule == "step":
        def factor(step: int) -> float:  # x0.1 at 1/3 and 2/3 of training: epochs 30 and 60 of 90
            return 0.1 ** int(3 * step / total)
    else:
        def factor(step: int) -> float:
            if step < warmup:  # short linear warm-up: large-lr SGD diverges on a cold BN model
                return (step + 1) / warmup
            return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def finetune_optimizer(model: nn.Module, inputs, steps_per_epoch: int):
    """(optimizer, scheduler) of fine-tuning (`engine.inputs.FinetuneInputs`): constant lr, as WILDS."""
    del steps_per_epoch
    cls = torch.optim.AdamW if inputs.optimizer == "adamw" else torch.optim.Adam
    optimizer = cls(model.parameters(), lr=inputs.lr, weight_decay=inputs.weight_decay)
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)


def training_state(model: nn.Module, optimizer, scheduler, scaler, epoch: int) -> dict:
    """Everything a phase needs to continue after `epoch` (saved with every epoch's checkpoint)."""
    return {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(), "rng": torch.get_rng_state(), "epoch": epoch}


def restore_training_state(state: dict, model: nn.Module, optimizer, scheduler, scaler) -> int:
    """Load a `training_state` back; returns the number of finished epochs."""
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    scaler.load_state_dict(state["scaler"])
    torch.set_rng_state(state["rng"])
    return state["epoch"]


def cross_entropy_step(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(model(images), labels)


def train_epoch(model: nn.Module, loader, optimizer, scheduler, label_map: torch.Tensor | None,
                device: torch.device, precision: str = "fp32", scaler: torch.amp.GradScaler | None = None,
                step_loss: Callable = cross_entropy_step) -> dict:
    """One pass over `loader`; returns mean loss and throughput (images per second).

    `step_loss(model, images, labels)` gives the batch loss (cross-entropy by default; the CLIP
    objective passes its contrastive loss). The loss is summed on the device and read once at the
    end, so the loop never waits for the GPU between steps.
    """
    model.train()
    scaler = scaler or grad_scaler(device, precision)
    total_loss, seen, start = torch.zeros((), device=device), 0, time.perf_counter()
    for images, labels in loader:
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True).long()
        if label_map is not None:
            labels = label_map[labels]
        with autocast(device, precision):
            loss = step_loss(model, images, labels)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        if hasattr(model, "after_step"):
            model.after_step()
        total_loss += loss.detach().float() * len(labels)
        seen += len(labels)
    if seen == 0:
        raise RuntimeError("the training loader yielded no batch: the subset is smaller than one batch")
    return {"train_loss": float(total_loss) / seen, "images_per_s": seen / (time.perf_counter() - start)}


@torch.inference_mode()
def predict(model: nn.Module, loader, device: torch.device, precision: str = "fp32") -> tuple[np.ndarray, np.ndarray]:
    """(true labels, predicted labels) over a whole split, in file order."""
    model.eval()
    trues, preds = [], []
    for images, labels in loader:
        with autocast(device, precision):
            logits = model(images.to(device, non_blocking=True))
        trues.append(labels)
        preds.append(logits.argmax(1))
    return torch.cat(trues).cpu().numpy(), torch.cat(preds).cpu().numpy()


def eval_batch_size(train_batch_size: int) -> int:
    """Evaluation batches: inference keeps no activations for backward, so they can be twice as large (at least 256)."""
    return max(256, 2 * train_batch_size)


def scores(name: str, y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    """{'<name>_f1': macro-F1, '<name>_acc': accuracy} (fractions)."""
    return {f"{name}_f1": macro_f1(y_true, y_pred), f"{name}_acc": accuracy(y_true, y_pred)}


def evaluate(model: nn.Module, loaders: dict, device: torch.device, label_map: np.ndarray | None = None,
             sets: dict | None = None, precision: str = "fp32") -> dict:
    """Macro-F1 and accuracy (fractions) per evaluated set: {'<name>_f1', '<name>_acc'}.

    `loaders` maps a split to its loader; each split is predicted once. `sets` maps a metric prefix
    to (split, rows or None): a set is a whole split or some of its rows (e.g. one DomainNet domain
    of the pooled OOD split). Without `sets`, each loader's name is its own prefix.
    """
    sets = sets or {name: (name, None) for name in loaders}
    predictions = {split: predict(model, loaders[split], device, precision)
                   for split in dict.fromkeys(split for split, _ in sets.values())}
    out = {}
    for name, (split, rows) in sets.items():
        y_true, y_pred = predictions[split]
        if rows is not None:
            y_true, y_pred = y_true[rows], y_pred[rows]
        if label_map is not None:
            y_true = label_map[y_true]
        out.update(scores(name, y_true, y_pred))
    return out
