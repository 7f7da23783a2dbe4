"""Sweep specs: a declarative grid that expands into cells (one Tune trial each).

A cell is (target, pre-training source, intervention, value, architecture, seed) plus the recipe.
Its config is flat and JSON-serialisable (DESIGN.md's trial config). What decides its result is
gathered in `engine.inputs` (one frozen dataclass per phase), whose hashes are the cell id and the
pre-trained cache key; resources, storage paths and data locations are never part of them.

A sweep is a list of *arms* (an intervention and its values over some sources and targets) plus
baselines (`scratch` per target, `full` per source). Most scripts have one arm and one target and
write them as `intervention=`, `values=` and `target=`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

from engine.inputs import SCHEMA, FinetuneInputs, PretrainInputs, canonical_json
from engine.recipes import REFERENCE_RECIPE, Recipe

# Keys that never change a result: left out of the cell id.
NON_RESULT_KEYS = frozenset({"sweep", "cell_id", "smoke"})
# Interventions whose pre-training is contrastive image-text learning (captions of the classes).
OBJECTIVES = {"clip": "clip"}


@dataclass(frozen=True)
class Target:
    """A fine-tuning task: its name in configs and reports, the registered source, its options."""

    name: str                   # e.g. "iwildcam", "domainnet-sketch"
    source: str = ""            # registered source (default: `name`)
    options: dict = field(default_factory=dict)

    @property
    def registered(self) -> str:
        return self.source or self.name


@dataclass(frozen=True)
class Arm:
    """One intervention of a sweep and its values, over some of the sweep's sources and targets."""

    intervention: str
    values: tuple = (None,)
    params: dict = field(default_factory=dict)      # build_subset params, on top of the spec's per source
    sources: tuple[str, ...] = ()                   # default: the spec's sources
    targets: tuple[str, ...] = ()                   # default: every target of the spec
    smoke_values: tuple = ()                        # --smoke keeps these (default: the first two values)
    smoke_params: dict = field(default_factory=dict)  # --smoke's params (e.g. a budget its smaller data can fill)


@dataclass(frozen=True)
class Weights:
    """A pre-trained checkpoint given by the user for the cells of (source, arch) that pre-train."""

    source: str
    arch: str
    path: str                   # where it is: not part of any hash
    sha256: str                 # what it is: part of the cell id and the pre-trained cache key


@dataclass(frozen=True)
class SweepSpec:
    """One experiment of the papers: arms x sources x targets x architectures x seeds, plus baselines."""

    name: str
    sources: tuple[str, ...]
    archs: tuple[str, ...]
    intervention: str = ""                  # one-arm shorthand: intervention, values, smoke_values
    values: tuple = ()
    smoke_values: tuple = ()
    arms: tuple[Arm, ...] = ()
    target: str = "synthcam"                # one-target shorthand: target, target_options
    target_options: dict = field(default_factory=dict)
    targets: tuple[Target, ...] = ()
    smoke_targets: tuple[str, ...] = ()     # --smoke keeps these targets (default: the first two)
    seeds: int = 1
    baselines: tuple[str, ...] = ("scratch",)   # "scratch" (per target) and/or "full" (per source)
    full_sources: tuple[str, ...] | None = None  # sources with a `full` baseline (default: all)
    recipe: Recipe = REFERENCE_RECIPE
    source_options: dict = field(default_factory=dict)       # per source name: options for get_source
    intervention_params: dict = field(default_factory=dict)  # per source name: build_subset params
    weights: tuple[Weights, ...] = ()
    smoke: bool = False

    def all_arms(self) -> tuple[Arm, ...]:
        if self.arms:
            return self.arms
        if self.intervention:
            return (Arm(self.intervention, tuple(self.values), smoke_values=tuple(self.smoke_values)),)
        return ()

    def all_targets(self) -> tuple[Target, ...]:
        return self.targets or (Target(self.target, options=dict(self.target_options)),)

    def pretraining_sources(self) -> tuple[str, ...]:
        """Every source some cell pre-trains on, in order."""
        used = [s for arm in self.all_arms() for s in (arm.sources or self.sources)]
        if "full" in self.baselines:
            used += [s for s in self.sources if self.full_sources is None or s in self.full_sources]
        return tuple(dict.fromkeys(used))


def _cell(spec: SweepSpec, target: Target, source: str, intervention: str, value, params: dict, arch: str,
          seed: int) -> dict:
    scratch = intervention == "scratch"
    weights = next((w for w in spec.weights if (w.source, w.arch) == (source, arch)), None)
    trains = not scratch and weights is None   # a cell with given weights does not pre-train
    recipe = spec.recipe.config(arch)
    if not trains:  # the pre-training recipe must not change the identity of cells that do not use it
        recipe = {k: (0 if k == "pretrain_epochs" else None) if k.startswith("pretrain_") else v
                  for k, v in recipe.items()}
    config = {
        "schema": SCHEMA,
        "sweep": spec.name,
        "source": "none" if scratch else source,
        "source_options": canonical_json({} if scratch else spec.source_options.get(source, {})),
        "intervention": intervention,
        "value": value,
        "intervention_params": canonical_json(params),
        "pretrain_objective": None if scratch else OBJECTIVES.get(intervention, "supervised"),
        "pretrain_weights": weights.sha256 if weights else None,
        "arch": arch,
        "seed": seed,
        "target": target.name,
        "target_source": target.registered,
        "target_options": canonical_json(target.options),
        **recipe,
        "smoke": spec.smoke,
    }
    config["cell_id"] = cell_id(config)
    return config


def cell_id(config: dict) -> str:
    """The cell's identity: the hash of its fine-tuning inputs (which hold its pre-training inputs)."""
    return FinetuneInputs.from_config(config).key


def pretrain_id(config: dict) -> str | None:
    """The pre-trained cache key of a cell (None for scratch)."""
    inputs = PretrainInputs.from_config(config)
    return inputs.key if inputs else None


def arm_params(spec: SweepSpec, arm: Arm, source: str) -> dict:
    """build_subset params of `arm` on `source`: the spec's per-source params, then the arm's."""
    return {**spec.intervention_params.get(source, {}), **arm.params}


def cells(spec: SweepSpec) -> list[dict]:
    """Every cell of the sweep, baselines first, in a stable order."""
    out = []
    full = [s for s in spec.sources if "full" in spec.baselines and (spec.full_sources is None or s in spec.full_sources)]
    for seed in range(spec.seeds):
        for arch in spec.archs:
            for target in spec.all_targets():
                if "scratch" in spec.baselines:
                    out.append(_cell(spec, target, "none", "scratch", None, {}, arch, seed))
                for source in full:
                    out.append(_cell(spec, target, source, "full", None, {}, arch, seed))
                for arm in spec.all_arms():
                    if arm.targets and target.name not in arm.targets:
                        continue
                    for source in arm.sources or spec.sources:
                        for value in arm.values:
                            out.append(_cell(spec, target, source, arm.intervention, value,
                                             arm_params(spec, arm, source), arch, seed))
    return out


def describe_cell(config: dict) -> str:
    """A short readable name of a cell, e.g. `resnet18-synthnet-quantity=500-s0` (`@<target>` for a grid target)."""
    what = "scratch" if config["intervention"] == "scratch" else f"{config['source']}-{config['intervention']}"
    if config.get("value") is not None:
        what += f"={config['value']}"
    params = json.loads(config.get("intervention_params") or "{}")
    if params:
        what += "(" + ",".join(f"{k}={v}" for k, v in sorted(params.items())) + ")"
    where = f"@{config['target']}" if config.get("target") != config.get("target_source", config.get("target")) else ""
    return f"{config['arch']}-{what}-s{config['seed']}{where}"
