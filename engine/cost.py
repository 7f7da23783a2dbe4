"""Cost estimates for `--dry-run`: image passes per cell, then CPU core-hours and GPU-hours.

These are rough by design and say what they assume:
- CPU: ~200 training images/s per core for the embedded models at 32 px (measured on this
  project's 2-core CI machine: resnet18 pre-training reports 190-220 images/s per trial).
- GPU: one NVIDIA A100 per trial at ~3,000 training images/s for ResNet-50 at FFCV's 160-192 px
  (FFCV's published ImageNet result: ResNet-50, 88 epochs, 77.2 min on 8 A100s, i.e.
  1.28 M x 88 / (77.2 x 60 s) / 8 = ~3,040 images/s per GPU), scaled by each architecture's
  GFLOPs at 224 px relative to ResNet-50 (4.1) and by pixels relative to 176 x 176, and capped at
  ~10,000 images/s (the data pipeline's rate for small models).
An evaluation pass counts a third of a training pass. Cells that share a pre-trained model pay
for it once; the estimate counts every cell's pre-training, so it is an upper bound.
"""
from __future__ import annotations

CPU_IMAGES_PER_S_PER_CORE = 200.0
GPU_NAME = "NVIDIA A100"
GPU_RESNET50_IMAGES_PER_S = 3040.0
GPU_REFERENCE_PIXELS = 176 ** 2
GPU_MAX_IMAGES_PER_S = 10_000.0
# torchvision's reported GFLOPs at 224 px (ImageNet weights' metadata); CLIP ViT-B/32 from open_clip
GFLOPS = {"resnet18": 1.81, "resnet34": 3.66, "resnet50": 4.09, "resnext50_32x4d": 4.23, "densenet121": 2.83,
          "mobilenet_v3_large": 0.22, "mobilenet_v3_small": 0.06, "alexnet": 0.71, "ViT-B-32": 4.4,
          "ViT-B-16": 17.6, "RN50": 5.4}
SOURCE_NOTE = (f"assumes one {GPU_NAME} per trial at ~{GPU_RESNET50_IMAGES_PER_S:,.0f} images/s for ResNet-50 "
               "(FFCV's published ImageNet run: 88 epochs in 77.2 min on 8 A100s), scaled by GFLOPs and pixels")


def image_passes(cell: dict, pretrain_images: int, finetune_images: int, eval_images: int) -> tuple[float, float]:
    """(pre-training, fine-tuning) image passes of a cell; an evaluation pass counts a third."""
    pre = (cell["pretrain_epochs"] or 0) * pretrain_images
    return pre, cell["finetune_epochs"] * (finetune_images + eval_images / 3)


def gpu_seconds(arch: str, resolution: int, passes: float) -> float:
    rate = GPU_RESNET50_IMAGES_PER_S * GFLOPS["resnet50"] / GFLOPS.get(arch, GFLOPS["resnet50"])
    rate *= GPU_REFERENCE_PIXELS / max(1, resolution) ** 2
    return passes / min(rate, GPU_MAX_IMAGES_PER_S)


def estimate(cells: list[dict], pretrain_images: dict[str, int], target_sizes: dict[str, tuple[int, int]]) -> dict:
    """Total image passes, CPU core-hours and GPU-hours of `cells` (see the module docstring)."""
    passes = gpu = 0.0
    for cell in cells:
        pre, fine = image_passes(cell, pretrain_images.get(cell["cell_id"]) or 0, *target_sizes.get(cell["target"], (0, 0)))
        passes += pre + fine
        gpu += gpu_seconds(cell["arch"], cell["pretrain_resolution"] or 0, pre) if pre else 0.0
        gpu += gpu_seconds(cell["arch"], cell["finetune_resolution"], fine)
    return {"passes": passes, "cpu_core_hours": passes / CPU_IMAGES_PER_S_PER_CORE / 3600, "gpu_hours": gpu / 3600}
