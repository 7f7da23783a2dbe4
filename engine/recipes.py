"""Training recipes of both phases: the papers' reference recipe and the embedded CPU-scale one.

Real data (`REFERENCE_RECIPE`) follows PyTorch's reference ImageNet recipe for pre-training
(pytorch/examples `imagenet/main.py`: SGD, momentum 0.9, lr 0.1 per 256 images, weight decay
1e-4, 90 epochs, lr x0.1 at epochs 30 and 60, RandomResizedCrop(224) with scale (0.08, 1) plus a
flip, evaluation at Resize(256) + CenterCrop(224)) and WILDS' iWildCam defaults for fine-tuning
(Adam, lr 3e-5, no weight decay, batch 16, 12 epochs, 448 px, no augmentation).
- AlexNet pre-trains at lr 0.01, as that recipe's README says (0.1 is too high for it).
- MobileNet-V3's own torchvision recipe is 600 epochs of RMSprop; the papers' 90 epochs cannot
  follow it, so it takes the SGD recipe above like every other architecture.
- Each architecture keeps its own batch-norm momentum (`bn_momentum=None`).
- Pre-training runs in bf16 autocast, fine-tuning in fp32 (as WILDS).

The embedded default (`EMBEDDED_RECIPE`) keeps CPU-scale choices, which every sweep script's
`--help` states: 3 pre-training epochs with a warm-up + cosine schedule, a milder crop (scale
(0.5, 1)), batch-norm momentum 0.1 for every architecture (MobileNet-V3's 0.01 never settles in
a few hundred steps), fine-tuning at lr 1e-3 for 4 epochs, 32 px, fp32.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

PRECISIONS = ("fp32", "bf16", "fp16")
SCHEDULES = ("step", "cosine")
PRETRAIN_OPTIMIZERS = ("sgd", "adamw")
FINETUNE_OPTIMIZERS = ("adam", "adamw")


@dataclass(frozen=True)
class Recipe:
    """Both phases' hyper-parameters. Defaults: the papers' real-data recipe (module docstring)."""

    pretrain_epochs: int = 90
    pretrain_resolution: int = 224
    pretrain_batch_size: int = 256
    pretrain_optimizer: str = "sgd"         # "sgd" | "adamw" (CLIP-style contrastive pre-training)
    pretrain_lr: float = 0.1                # SGD: per 256 images of batch (scaled linearly); AdamW: as is
    pretrain_arch_lr: tuple[tuple[str, float], ...] = (("alexnet", 0.01),)  # per-architecture pretrain_lr
    pretrain_momentum: float = 0.9
    pretrain_weight_decay: float = 1e-4
    pretrain_schedule: str = "step"         # "step": x0.1 at 1/3 and 2/3 of the epochs (30, 60 of 90); "cosine"
    pretrain_crop_scale: float = 0.08       # RandomResizedCrop's smallest area fraction
    pretrain_eval_crop: float = 0.875       # centre-crop ratio of pre-training evaluation (224 / 256)
    pretrain_precision: str = "bf16"
    bn_momentum: float | None = None        # None: each architecture's own batch-norm momentum
    finetune_epochs: int = 12
    finetune_resolution: int = 448
    finetune_batch_size: int = 16
    finetune_optimizer: str = "adam"        # "adam" (WILDS iWildCam) | "adamw" (CLIP fine-tuning)
    finetune_lr: float = 3e-5
    finetune_weight_decay: float = 0.0
    finetune_precision: str = "fp32"

    def __post_init__(self) -> None:
        for key, allowed in (("pretrain_precision", PRECISIONS), ("finetune_precision", PRECISIONS),
                             ("pretrain_schedule", SCHEDULES), ("pretrain_optimizer", PRETRAIN_OPTIMIZERS),
                             ("finetune_optimizer", FINETUNE_OPTIMIZERS)):
            if getattr(self, key) not in allowed:
                raise ValueError(f"recipe: {key}={getattr(self, key)!r}; choose one of {', '.join(allowed)}")

    def pretrain_lr_for(self, arch: str) -> float:
        """The pre-training lr of `arch` (AlexNet's own in the reference recipe)."""
        return dict(self.pretrain_arch_lr).get(arch, self.pretrain_lr)

    def config(self, arch: str) -> dict:
        """The recipe's keys of a cell's flat config, with `arch`'s pre-training lr resolved."""
        keys = {k: v for k, v in self.__dict__.items() if k != "pretrain_arch_lr"}
        return {**keys, "pretrain_lr": self.pretrain_lr_for(arch)}


REFERENCE_RECIPE = Recipe()
EMBEDDED_RECIPE = Recipe(
    pretrain_epochs=3, pretrain_resolution=32, pretrain_batch_size=64, pretrain_lr=0.2,
    pretrain_arch_lr=(("alexnet", 0.02),), pretrain_schedule="cosine", pretrain_crop_scale=0.5,
    pretrain_eval_crop=1.0, pretrain_precision="fp32", bn_momentum=0.1,
    finetune_epochs=4, finetune_resolution=32, finetune_batch_size=32, finetune_lr=1e-3,
)
SMOKE_RECIPE = replace(EMBEDDED_RECIPE, pretrain_epochs=1, finetune_epochs=2)
