"""Interventions on a pre-training source: index lists and label maps over its train split.

An intervention never copies images: it picks rows of the source's train `.beton` and maps
their labels. Each is one registered function (`register_intervention`); `build_subset` looks
it up by name. Every one is deterministic given its seed. Rules and errors per intervention:
datasets/README.md.

| module | interventions |
|---|---|
| `core.py` | `Subset`, `InterventionError`, the registry, `build_subset` |
| `sampling.py` | helpers: rows per class, balanced counts, seeded draws |
| `basic.py` | `full`, `quantity`, `classes`, `domain` (+ `domain_rows`) |
| `wordnet.py` | `semantics`, `depth` |
| `breeds.py` | `diversity` (the BREEDS table) |
"""
from datasets.interventions.core import (
    INTERVENTIONS,
    InsufficientData,
    InterventionError,
    Subset,
    build_subset,
    register_intervention,
)
from datasets.interventions import basic, breeds, wordnet  # noqa: F401  (each registers its interventions)
from datasets.interventions.basic import domain_rows

__all__ = ["INTERVENTIONS", "InsufficientData", "InterventionError", "Subset", "build_subset", "domain_rows",
           "register_intervention"]
