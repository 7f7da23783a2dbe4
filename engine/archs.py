"""Architecture registry: torchvision models by name, adapted for small inputs.

A new architecture is one `register_arch` call. Each entry knows where its classification head
is (to swap it between pre-training and fine-tuning) and the smallest input it can take.

Small inputs: torchvision's stems shrink the input 4x (ResNet, ResNeXt, DenseNet) or 2x
(MobileNet-V3) before stages that shrink it 8x (or 16x) more. Below 32 px the stem would collapse
the image to less than one pixel per later stage, so the stem's stride is removed (maxpool first,
then the first convolution's stride) until the stages get at least 8x8 (MobileNet-V3: 16x16).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torchvision
from torch import nn


class ArchError(ValueError):
    """Unknown architecture or impossible input size; one line that says the fix."""


@dataclass(frozen=True)
class Arch:
    build: Callable[[int], nn.Module]           # num_classes -> model (random init)
    head: str                                   # dotted path of the final Linear layer
    adapt: Callable[[nn.Module, int], None]     # (model, resolution) -> adapt stem in place
    min_resolution: int = 16


ARCHS: dict[str, Arch] = {}


def register_arch(name: str, arch: Arch) -> None:
    ARCHS[name] = arch


def _adapt_resnet_stem(model: nn.Module, resolution: int) -> None:
    conv, pool = ("conv1", "maxpool") if hasattr(model, "conv1") else ("features.conv0", "features.pool0")
    if resolution < 32:
        _set(model, pool, nn.Identity())
    if resolution < 16:
        _get(model, conv).stride = (1, 1)


def _adapt_mobilenet_stem(model: nn.Module, resolution: int) -> None:
    if resolution < 32:
        model.features[0][0].stride = (1, 1)


def _no_adaptation(model: nn.Module, resolution: int) -> None:
    del model, resolution


def _get(model: nn.Module, dotted: str) -> nn.Module:
    for part in dotted.split("."):
        model = model[int(part)] if part.isdigit() else getattr(model, part)
    return model


def _set(model: nn.Module, dotted: str, module: nn.Module) -> None:
    parent, _, last = dotted.rpartition(".")
    owner = _get(model, parent) if parent else model
    if last.isdigit():
        owner[int(last)] = module
    else:
        setattr(owner, last, module)


for _name in ("resnet18", "resnet34", "resnet50", "resnext50_32x4d"):
    register_arch(_name, Arch(getattr(torchvision.models, _name), "fc", _adapt_resnet_stem, min_resolution=8))
register_arch("densenet121", Arch(torchvision.models.densenet121, "classifier", _adapt_resnet_stem, min_resolution=8))
register_arch("mobilenet_v3_small", Arch(torchvision.models.mobilenet_v3_small, "classifier.3", _adapt_mobilenet_stem))
register_arch("mobilenet_v3_large", Arch(torchvision.models.mobilenet_v3_large, "classifier.3", _adapt_mobilenet_stem))
register_arch("alexnet", Arch(torchvision.models.alexnet, "classifier.6", _no_adaptation, min_resolution=64))


def check_arch(name: str, resolution: int) -> None:
    """Raise ArchError (one line) when `name` is unknown or cannot take `resolution` px."""
    if name not in ARCHS:
        raise ArchError(f"unknown architecture '{name}'; known: {', '.join(sorted(ARCHS))}")
    need = ARCHS[name].min_resolution
    if resolution < need:
        raise ArchError(f"{name} needs inputs of at least {need} px, got {resolution} px; raise the resolution or pick another architecture")


def build_model(name: str, num_classes: int, resolution: int) -> nn.Module:
    """A randomly initialised `name` with `num_classes` outputs, adapted to `resolution` px inputs."""
    check_arch(name, resolution)
    model = ARCHS[name].build(num_classes=num_classes)
    ARCHS[name].adapt(model, resolution)
    for m in model.modules():
        # MobileNet-V3 uses BN momentum 0.01, tuned for ImageNet's 5000 steps per epoch; with a
        # few hundred steps its running statistics never converge and evaluation sits at chance.
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = 0.1
    return model


def replace_head(model: nn.Module, name: str, num_classes: int) -> nn.Module:
    """Swap the final Linear layer for a fresh one with `num_classes` outputs (for fine-tuning)."""
    old = _get(model, ARCHS[name].head)
    _set(model, ARCHS[name].head, nn.Linear(old.in_features, num_classes))
    return model


def output_size(model: nn.Module, resolution: int) -> torch.Size:
    """Shape of the logits for one image (a cheap sanity check used in tests)."""
    model.eval()
    with torch.no_grad():
        return model(torch.zeros(1, 3, resolution, resolution)).shape
