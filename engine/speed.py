"""Speed settings of a trial that do not enter the cell id, and the provenance record they leave.

Precision is a result-changing config key (`pretrain_precision`, `finetune_precision`,
`engine.loops`); the settings here only change speed, at the price of run-to-run bit-exactness:
- `cudnn.benchmark` times several convolution algorithms per input shape and keeps the fastest,
  which may differ between runs;
- TF32 matmuls and convolutions on Ampere and newer GPUs (PyTorch's default for convolutions);
- `torch.compile` (opt-in, `--compile`) fuses kernels, which reorders floating-point sums.
`--deterministic` turns all of them off and asks PyTorch for deterministic kernels (warning where
one has none). Every cell records which were on (`Speed.record`), in `cell.json`'s provenance and
in the pre-trained model's `meta.json`.

Needs neither Ray nor FFCV.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import nn


class SpeedError(ValueError):
    """Contradictory speed flags; one line naming them."""


@dataclass(frozen=True)
class Speed:
    """How a trial trades bit-exact reruns for speed (never part of a cell id)."""

    deterministic: bool = False
    compile: bool = False

    def __post_init__(self) -> None:
        if self.deterministic and self.compile:
            raise SpeedError("--compile and --deterministic contradict each other (torch.compile reorders "
                             "floating-point sums); choose one")

    def apply(self, device: torch.device) -> dict:
        """Set this process's global backend flags for `device`; returns `record(device)`."""
        on_gpu = device.type == "cuda"
        torch.backends.cudnn.benchmark = on_gpu and not self.deterministic
        torch.backends.cudnn.deterministic = self.deterministic
        torch.backends.cuda.matmul.allow_tf32 = on_gpu and not self.deterministic
        torch.backends.cudnn.allow_tf32 = not self.deterministic
        if self.deterministic:
            # cuBLAS reads this when its handle is created; without it deterministic matmuls raise
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        # warn_only: some kernels (e.g. adaptive average pooling's CUDA backward) have no
        # deterministic version; a warning names them instead of failing every ResNet trial
        torch.use_deterministic_algorithms(self.deterministic, warn_only=True)
        return self.record(device)

    def prepare(self, model: nn.Module, device: torch.device) -> nn.Module:
        """The model on `device`, channels-last, compiled in place with `--compile` (state-dict keys unchanged)."""
        model = model.to(device).to(memory_format=torch.channels_last)
        if self.compile:
            model.compile()
        return model

    def record(self, device: torch.device) -> dict:
        """The speed settings in force, for the cell's provenance."""
        on_gpu = device.type == "cuda"
        return {
            "device": torch.cuda.get_device_name(device) if on_gpu else "cpu",
            "deterministic": self.deterministic,
            "cudnn_benchmark": bool(torch.backends.cudnn.benchmark) if on_gpu else False,
            "tf32": bool(torch.backends.cuda.matmul.allow_tf32 or torch.backends.cudnn.allow_tf32) if on_gpu else False,
            "torch_compile": self.compile,
            "channels_last": True,
        }
