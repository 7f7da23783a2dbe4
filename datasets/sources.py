"""Data sources: the registry behind `get_source`, and what every source provides.

A source knows its splits, its classes, the label of every example, and how to write each split
to a `.beton` file. Targets also say which splits are evaluated as ID and OOD, in the WILDS way.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from datasets.storage.beton import beton_path

SOURCES: dict[str, Callable[..., "Source"]] = {}

# WILDS' split names; targets evaluate ID on id_test, OOD on test, and report both val splits too
WILDS_SPLITS = ("train", "id_val", "id_test", "val", "test")
WILDS_EVAL_SPLITS = {"id": "id_test", "ood": "test", "id_val": "id_val", "ood_val": "val"}

# Modules whose import registers sources (imported on the first `get_source`, keeping `import
# datasets` light: none of them imports torch or FFCV at module level).
SOURCE_MODULES = ("datasets.generators.synthetic", "datasets.generators.fractaldb", "datasets.generators.domains",
                  "datasets.readers.imagenet",
                  "datasets.readers.inat", "datasets.readers.wilds", "datasets.readers.domainnet",
                  "datasets.readers.imagenet_shifts", "datasets.readers.shift_folders", "datasets.shifts.source")


class SourceError(ValueError):
    """A bad source name, option or data root; the message is one line that says the fix."""


def register_source(name: str) -> Callable:
    """Decorator: register a factory `f(data_root=None, **options) -> Source` under `name`."""

    def wrap(factory: Callable[..., "Source"]) -> Callable[..., "Source"]:
        SOURCES[name] = factory
        return factory

    return wrap


def get_source(name: str, data_root: str | Path | None = None, **options) -> "Source":
    """Look up a source by name and build it.

    Embedded and generated sources ("synthnet", "synthcam", "fractaldb") need no data_root. The
    on-disk ones ("imagenet", "inat2017", "iwildcam", "domainnet", "folder") look for their own
    sub-folder of `data_root` (the folder holding the datasets), or accept the dataset folder itself.
    """
    import importlib

    for module in SOURCE_MODULES:
        importlib.import_module(module)
    if name not in SOURCES:
        raise SourceError(f"unknown source '{name}'; known sources: {', '.join(sorted(SOURCES))}")
    return SOURCES[name](data_root=data_root, **options)


@dataclass
class Source:
    """Base class. Subclasses fill `splits`, `classes`, `labels()` and `_write()`."""

    name: str
    options: dict = field(default_factory=dict)
    splits: tuple[str, ...] = ("train", "val")
    classes: list[str] = field(default_factory=list)
    # metric prefix -> split evaluated under that prefix (WILDS names for targets)
    eval_splits: dict[str, str] = field(default_factory=lambda: {"val": "val"})
    native_resolution: int = 32
    # the split pre-training is evaluated on ("val" for ImageNet-like sources, "test" for DomainNet)
    holdout_split: str = "val"
    # per class: the coarse category it belongs to (iNaturalist's supercategories), or None
    supercategories: list[str] | None = None

    def labels(self, split: str) -> np.ndarray:
        """Int label of every example of `split`, in the order of that split's `.beton`."""
        raise NotImplementedError

    def domains(self, split: str) -> np.ndarray | None:
        """Per example of `split`: its domain name (DomainNet), or None for single-domain sources."""
        return None

    def evaluation_sets(self) -> dict[str, tuple[str, np.ndarray | None]]:
        """Metric prefix -> (split, rows or None for the whole split) of every evaluated set.

        The `eval_splits`, plus, for a target whose OOD split holds several domains (DomainNet),
        one set per domain, `ood_<domain>`: each OOD domain is its own OOD test set as well as
        part of the pooled `ood` one.
        """
        sets: dict[str, tuple[str, np.ndarray | None]] = {p: (s, None) for p, s in self.eval_splits.items()}
        ood = self.eval_splits.get("ood")
        tags = self.domains(ood) if ood else None
        if tags is not None:
            for domain in sorted(set(tags.tolist())):
                sets[f"ood_{domain}"] = (ood, np.flatnonzero(tags == domain))
        return sets

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def content_hash(self, split: str) -> str:
        """Hash of what the split's file would contain (generation parameters or file list)."""
        blob = json.dumps({"source": self.name, "split": split, "options": self.options}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()

    def check_split(self, split: str) -> None:
        if split not in self.splits:
            raise SourceError(f"source '{self.name}' has no split '{split}'; its splits: {', '.join(self.splits)}")

    def beton(self, split: str, resolution: int | None = None, num_workers: int = 1) -> Path:
        """Path of the split's `.beton` at `resolution`, written first if missing."""
        self.check_split(split)
        resolution = resolution or self.native_resolution
        path = beton_path(self.name, split, resolution, self.content_hash(split))
        if not path.exists():
            self._write(split, resolution, path, num_workers)
        return path

    def _write(self, split: str, resolution: int, path: Path, num_workers: int) -> None:
        raise NotImplementedError

    def images(self, split: str, resolution: int):
        """The split's examples as `(uint8 H x W x 3 image, label)`, indexable in `.beton` order
        (what transforms of a source, `datasets.shifts`, read)."""
        raise SourceError(f"source '{self.name}' cannot hand out its images one by one; use a generated or "
                          "on-disk source")

    def describe(self) -> dict:
        """Sizes and classes, stored with each trial."""
        return {
            "source": self.name,
            "options": self.options,
            "num_classes": self.num_classes,
            "split_sizes": {s: int(len(self.labels(s))) for s in self.splits},
        }
