"""Training and evaluation loops, and the optimisers of both phases.

Pre-training follows the PyTorch ImageNet recipe scaled down (SGD, momentum 0.9, weight decay
1e-4, lr 0.1 per 256 images, cosine or step schedule); fine-tuning follows WILDS' iWildCam
defaults (Adam, no weight decay). Schedules step per iteration so a resumed epoch continues the
same curve.
"""
from __future__ import annotations

import math
import time

import numpy as np
import torch
from torch import nn

from analysis.metrics import accuracy, macro_f1


def pretrain_optimizer(model: nn.Module, config: dict, steps_per_epoch: int):
    lr = config["pretrain_lr"] * config["pretrain_batch_size"] / 256
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=config["pretrain_momentum"],
                                weight_decay=config["pretrain_weight_decay"])
    total = max(1, config["pretrain_epochs"] * steps_per_epoch)
    warmup = min(steps_per_epoch, total // 10)
    if config["pretrain_schedule"] == "step":
        def factor(step: int) -> float:
            return 0.1 ** int(3 * step / total)
    else:
        def factor(step: int) -> float:
            if step < warmup:  # short linear warm-up: large-lr SGD diverges on a cold BN model
                return (step + 1) / warmup
            return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def finetune_optimizer(model: nn.Module, config: dict, steps_per_epoch: int):
    optimizer = torch.optim.Adam(model.parameters(), lr=config["finetune_lr"],
                                 weight_decay=config["finetune_weight_decay"])
    # Constant lr, as WILDS fine-tunes iWildCam; the scheduler is kept for a uniform checkpoint.
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)


def train_epoch(model: nn.Module, loader, optimizer, scheduler, label_map: torch.Tensor | None,
                device: torch.device) -> dict:
    """One pass over `loader`; returns mean loss and throughput (images per second)."""
    model.train()
    total_loss, seen, start = 0.0, 0, time.perf_counter()
    for images, labels in loader:
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True).long()
        if label_map is not None:
            labels = label_map[labels]
        with torch.autocast(device.type, enabled=device.type == "cuda"):
            loss = nn.functional.cross_entropy(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        total_loss += loss.item() * len(labels)
        seen += len(labels)
    if seen == 0:
        raise RuntimeError("the training loader yielded no batch: the subset is smaller than one batch")
    return {"train_loss": total_loss / seen, "images_per_s": seen / (time.perf_counter() - start)}


@torch.no_grad()
def predict(model: nn.Module, loader, device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """(true labels, predicted labels) over a whole split, in file order."""
    model.eval()
    trues, preds = [], []
    for images, labels in loader:
        with torch.autocast(device.type, enabled=device.type == "cuda"):
            logits = model(images.to(device, non_blocking=True))
        trues.append(labels.cpu().numpy())
        preds.append(logits.argmax(1).cpu().numpy())
    return np.concatenate(trues), np.concatenate(preds)


def evaluate(model: nn.Module, loaders: dict, device: torch.device, label_map: np.ndarray | None = None) -> dict:
    """Macro-F1 and accuracy (fractions) per named split: {'<name>_f1', '<name>_acc'}."""
    out = {}
    for name, loader in loaders.items():
        y_true, y_pred = predict(model, loader, device)
        if label_map is not None:
            y_true = label_map[y_true]
        out[f"{name}_f1"] = macro_f1(y_true, y_pred)
        out[f"{name}_acc"] = accuracy(y_true, y_pred)
    return out
