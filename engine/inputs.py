"""Each phase's inputs as one frozen dataclass: the phase function's only argument and its hash's input.

`PretrainInputs` holds every input of pre-training (source and its options, intervention, value,
its parameters, objective, given weights, architecture, seed, recipe, precision); its `key` names
the pre-trained cache entry `<storage>/pretrained/<key>/`, so two cells share a pre-trained model
only when they share all of these. `FinetuneInputs` holds the pre-training inputs (or None for
scratch) plus everything fine-tuning reads; its `key` is the cell id. Built by construction from a
cell's flat config, so a key cannot leave out an input: a field that is not in the dataclass is
not read by the phase.

`SCHEMA` versions the config: it changes when keys are added, removed or reinterpreted, and cells
or pre-trained models of another schema are reported and never reused.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields

SCHEMA = 2


def canonical_json(value) -> str:
    """Sorted-key, compact JSON: the same text for the same value in every process."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def stable_hash(value) -> str:
    """16 hex digits of the SHA-256 of `value`'s canonical JSON."""
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class PretrainInputs:
    """Everything a pre-trained model depends on (`engine.pretrain.pretrain`'s argument)."""

    schema: int
    source: str
    source_options: str         # canonical JSON
    intervention: str
    value: object               # JSON scalar
    intervention_params: str    # canonical JSON
    objective: str              # "supervised" | "clip"
    weights: str | None         # SHA-256 of a given checkpoint (then nothing is trained), else None
    arch: str
    seed: int
    bn_momentum: float | None
    epochs: int
    resolution: int | None
    batch_size: int | None
    optimizer: str | None
    lr: float | None
    momentum: float | None
    weight_decay: float | None
    schedule: str | None
    crop_scale: float | None
    eval_crop: float | None
    precision: str | None

    @classmethod
    def from_config(cls, config: dict) -> PretrainInputs | None:
        """The pre-training inputs of a cell's flat config; None for a scratch cell."""
        if config["intervention"] == "scratch":
            return None
        shared = ("schema", "source", "source_options", "intervention", "value", "intervention_params", "arch",
                  "seed", "bn_momentum")
        return cls(**{k: config[k] for k in shared}, objective=config["pretrain_objective"],
                   weights=config["pretrain_weights"],
                   **{f.name: config[f"pretrain_{f.name}"] for f in fields(cls)
                      if f.name not in shared and f.name not in ("objective", "weights")})

    @property
    def key(self) -> str:
        return stable_hash(asdict(self))

    def params(self) -> dict:
        return json.loads(self.intervention_params)

    def options(self) -> dict:
        return json.loads(self.source_options)


@dataclass(frozen=True)
class FinetuneInputs:
    """Everything a cell's fine-tuning depends on (the trainable's argument); its key is the cell id."""

    schema: int
    pretrained: PretrainInputs | None
    target: str
    target_source: str
    target_options: str         # canonical JSON
    arch: str
    seed: int
    bn_momentum: float | None
    epochs: int
    resolution: int
    batch_size: int
    optimizer: str
    lr: float
    weight_decay: float
    precision: str

    @classmethod
    def from_config(cls, config: dict) -> FinetuneInputs:
        shared = ("schema", "target", "target_source", "target_options", "arch", "seed", "bn_momentum")
        return cls(**{k: config[k] for k in shared}, pretrained=PretrainInputs.from_config(config),
                   **{f.name: config[f"finetune_{f.name}"] for f in fields(cls)
                      if f.name not in shared and f.name != "pretrained"})

    @property
    def key(self) -> str:
        return stable_hash(asdict(self))

    def options(self) -> dict:
        return json.loads(self.target_options)
