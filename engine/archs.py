"""Architecture registry: torchvision models by name, adapted for small inputs, and CLIP image towers.

A new architecture is one `register_arch` call. Each entry builds a randomly initialised model
for (classes, resolution), knows where its classification head is (to swap it between
pre-training and fine-tuning) and the smallest input it can take.

Small inputs: torchvision's stems shrink the input 4x (ResNet, ResNeXt, DenseNet) or 2x
(MobileNet-V3) before stages that shrink it 8x (or 16x) more. Below 32 px the stem would collapse
the image to less than one pixel per later stage, so the stem's stride is removed (maxpool first,
then the first convolution's stride) until the stages get at least 8x8 (MobileNet-V3: 16x16).

CLIP: `clip_vit_mini` / `clip_vit_tiny` / `clip_vit_small` are small open_clip vision transformers (custom
configs in `engine.clip`) for CPU runs; any open_clip model name (`ViT-B-32`, `RN50`, ...) is
looked up in open_clip's own registry on first use (its weights come from `--weights`).

Importing this module needs neither Ray nor FFCV (the GPU benchmark imports it alone).
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
    build: Callable[[int, int], nn.Module]      # (num_classes, resolution) -> model (random init)
    head: str                                   # dotted path of the final Linear layer
    min_resolution: int = 16
    family: str = "torchvision"                 # "torchvision" | "clip"


ARCHS: dict[str, Arch] = {}


def register_arch(name: str, arch: Arch) -> None:
    ARCHS[name] = arch


def _adapt_resnet_stem(model: nn.Module, resolution: int) -> nn.Module:
    conv, pool = ("conv1", "maxpool") if hasattr(model, "conv1") else ("features.conv0", "features.pool0")
    if resolution < 32:
        _set(model, pool, nn.Identity())
    if resolution < 16:
        _get(model, conv).stride = (1, 1)
    return model


def _adapt_mobilenet_stem(model: nn.Module, resolution: int) -> nn.Module:
    if resolution < 32:
        model.features[0][0].stride = (1, 1)
    return model


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


def _torchvision(name: str, adapt: Callable[[nn.Module, int], nn.Module] | None) -> Callable[[int, int], nn.Module]:
    def build(num_classes: int, resolution: int) -> nn.Module:
        model = getattr(torchvision.models, name)(num_classes=num_classes)
        return adapt(model, resolution) if adapt else model
    return build


for _name in ("resnet18", "resnet34", "resnet50", "resnext50_32x4d"):
    register_arch(_name, Arch(_torchvision(_name, _adapt_resnet_stem), "fc", min_resolution=8))
register_arch("densenet121", Arch(_torchvision("densenet121", _adapt_resnet_stem), "classifier", min_resolution=8))
register_arch("mobilenet_v3_small", Arch(_torchvision("mobilenet_v3_small", _adapt_mobilenet_stem), "classifier.3"))
register_arch("mobilenet_v3_large", Arch(_torchvision("mobilenet_v3_large", _adapt_mobilenet_stem), "classifier.3"))
register_arch("alexnet", Arch(_torchvision("alexnet", None), "classifier.6", min_resolution=64))


def _clip_builder(name: str) -> Callable[[int, int], nn.Module]:
    def build(num_classes: int, resolution: int) -> nn.Module:
        from engine.clip import image_classifier

        return image_classifier(name, num_classes, resolution)
    return build


for _name in ("clip_vit_mini", "clip_vit_tiny", "clip_vit_small"):
    register_arch(_name, Arch(_clip_builder(_name), "head", min_resolution=16, family="clip"))


def get_arch(name: str) -> Arch:
    """The registered architecture, or an open_clip model registered on first use."""
    if name not in ARCHS and name[:1].isupper():  # open_clip's names: ViT-B-32, RN50, ...
        from engine.clip import open_clip_models

        if name in open_clip_models():
            register_arch(name, Arch(_clip_builder(name), "head", min_resolution=32, family="clip"))
    if name not in ARCHS:
        raise ArchError(f"unknown architecture '{name}'; known: {', '.join(sorted(ARCHS))} (and open_clip's model "
                        "names such as ViT-B-32, with --weights)")
    return ARCHS[name]


def check_arch(name: str, resolution: int) -> None:
    """Raise ArchError (one line) when `name` is unknown or cannot take `resolution` px."""
    need = get_arch(name).min_resolution
    if resolution < need:
        raise ArchError(f"{name} needs inputs of at least {need} px, got {resolution} px; raise the resolution or pick another architecture")


def build_model(name: str, num_classes: int, resolution: int, bn_momentum: float | None = None) -> nn.Module:
    """A randomly initialised `name` with `num_classes` outputs for `resolution` px inputs.

    `bn_momentum` None keeps the architecture's own batch-norm momentum (the reference recipe);
    the embedded CPU recipe sets 0.1, since MobileNet-V3's 0.01 is tuned for ImageNet's thousands
    of steps per epoch and its running statistics never settle in a few hundred.
    """
    check_arch(name, resolution)
    model = ARCHS[name].build(num_classes, resolution)
    if bn_momentum is not None:
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.momentum = bn_momentum
    return model


def replace_head(model: nn.Module, name: str, num_classes: int) -> nn.Module:
    """Swap the final Linear layer for a fresh one with `num_classes` outputs (for fine-tuning)."""
    old = _get(model, get_arch(name).head)
    _set(model, get_arch(name).head, nn.Linear(old.in_features, num_classes))
    return model


def head_classes(state: dict, name: str) -> int:
    """Number of classes of a state dict's head (its final Linear's output rows)."""
    return int(state[f"{get_arch(name).head}.weight"].shape[0])


def output_size(model: nn.Module, resolution: int) -> torch.Size:
    """Shape of the logits for one image (a cheap sanity check used in tests)."""
    model.eval()
    with torch.no_grad():
        return model(torch.zeros(1, 3, resolution, resolution)).shape
