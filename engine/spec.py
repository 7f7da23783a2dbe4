"""Sweep specs: a declarative grid that expands into cells (one Tune trial each).

A cell is (pre-training source, intervention, value, architecture, seed) plus the recipe. Its
config is flat and JSON-serialisable (DESIGN.md's trial config); its identity is a hash of the
keys that change results, so resources, storage paths and data locations never restart a cell.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

# Keys that never change a result: left out of the cell hash.
NON_RESULT_KEYS = frozenset({"sweep", "cell_id", "smoke"})
# Keys that decide the pre-trained model: its cache key (seed included).
PRETRAIN_KEYS = (
    "source", "source_options", "intervention", "value", "arch", "seed", "pretrain_epochs",
    "pretrain_resolution", "pretrain_batch_size", "pretrain_lr", "pretrain_momentum",
    "pretrain_weight_decay", "pretrain_schedule",
)


@dataclass(frozen=True)
class Recipe:
    """Both training phases. Defaults: PyTorch ImageNet recipe (scaled down) and WILDS iWildCam."""

    pretrain_epochs: int = 90
    pretrain_resolution: int = 224
    pretrain_batch_size: int = 256
    pretrain_lr: float = 0.1            # SGD, per 256 images of batch (scaled linearly)
    pretrain_momentum: float = 0.9
    pretrain_weight_decay: float = 1e-4
    pretrain_schedule: str = "cosine"   # "cosine" | "step" (x0.1 at 1/3 and 2/3 of training)
    finetune_epochs: int = 12
    finetune_resolution: int = 448
    finetune_batch_size: int = 16
    finetune_lr: float = 3e-5           # Adam, WILDS iWildCam default
    finetune_weight_decay: float = 0.0


@dataclass(frozen=True)
class SweepSpec:
    """One experiment of the papers: sources x values x architectures x seeds, plus baselines."""

    name: str
    intervention: str
    values: tuple
    sources: tuple[str, ...]
    archs: tuple[str, ...]
    target: str = "synthcam"
    seeds: int = 1
    baselines: tuple[str, ...] = ("scratch",)   # "scratch" and/or "full" (each source in full)
    recipe: Recipe = field(default_factory=Recipe)
    source_options: dict = field(default_factory=dict)   # per source name: options for get_source
    target_options: dict = field(default_factory=dict)
    intervention_params: dict = field(default_factory=dict)   # per source name: build_subset params
    smoke_values: tuple = ()                                  # values for --smoke (default: first two)
    smoke: bool = False


def _json(value) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def stable_hash(config: dict, keys) -> str:
    """Hex digest of the given keys of a config; stable across processes and Python versions."""
    return hashlib.sha256(_json({k: config[k] for k in sorted(keys)}).encode()).hexdigest()[:16]


def cell_id(config: dict) -> str:
    return stable_hash(config, [k for k in config if k not in NON_RESULT_KEYS])


def pretrain_id(config: dict) -> str:
    return stable_hash(config, PRETRAIN_KEYS)


def _cell(spec: SweepSpec, source: str, intervention: str, value, arch: str, seed: int) -> dict:
    recipe = spec.recipe.__dict__.copy()
    scratch = intervention == "scratch"
    if scratch:  # no pre-training: its recipe must not change the scratch cells' identity
        recipe = {k: (0 if k == "pretrain_epochs" else None) if k.startswith("pretrain_") else v
                  for k, v in recipe.items()}
    config = {
        "sweep": spec.name,
        "source": "none" if scratch else source,
        "source_options": _json({} if scratch else spec.source_options.get(source, {})),
        "intervention": intervention,
        "value": value,
        "intervention_params": _json({} if scratch or intervention == "full" else spec.intervention_params.get(source, {})),
        "arch": arch,
        "seed": seed,
        "target": spec.target,
        "target_options": _json(spec.target_options),
        **recipe,
        "smoke": spec.smoke,
    }
    config["cell_id"] = cell_id(config)
    return config


def cells(spec: SweepSpec) -> list[dict]:
    """Every cell of the sweep, baselines first, in a stable order."""
    out = []
    for seed in range(spec.seeds):
        for arch in spec.archs:
            if "scratch" in spec.baselines:
                out.append(_cell(spec, "none", "scratch", None, arch, seed))
            for source in spec.sources:
                if "full" in spec.baselines:
                    out.append(_cell(spec, source, "full", None, arch, seed))
                for value in spec.values:
                    out.append(_cell(spec, source, spec.intervention, value, arch, seed))
    return out
