"""`support_shift`: a reference distribution over a base source, and its shifted test sets.

Splits, each written once to its own `.beton` (the transforms run when the file is written, so
every cell evaluates the very same images and the file names in a cell's provenance pin them):
- `train`: the base's train split, tinted with correlation `p` (or untinted when `p` is None);
- `id_test`: the base's held-out split (`val` for ImageNet-like sources) under the same reference
  transform: the reference distribution's test set;
- `test`: for each shift of `shifts`, every held-out image under that shift, pooled; `domains()`
  tags each row with its shift, so each is evaluated on its own (`ood_<shift>_acc`/`_f1`) as DomainNet's
  domains are. `tint` draws its colour independently of the label; `flip` turns the reference
  image upside down.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from datasets.shifts.transforms import (
    ALPHA,
    SHIFTS,
    check_p,
    check_shifts,
    class_colours,
    support_of,
    tint,
    tint_colours,
)
from datasets.sources import Source, SourceError, get_source, register_source
from datasets.storage.beton import ensure_beton


@dataclass
class ShiftedSource(Source):
    base: Source | None = None
    natural: dict[str, Source] = field(default_factory=dict)  # natural shifted sets: name -> source (split `test`)

    @property
    def p(self) -> float | None:
        return self.options["p"]

    @property
    def shifts(self) -> tuple[str, ...]:
        return tuple(self.options["shifts"])

    @cached_property
    def colours(self) -> np.ndarray:
        return class_colours(self.num_classes, self.options["seed"])

    def _base_split(self, split: str) -> str:
        return self.base.splits[0] if split == "train" else self.base.holdout_split

    def plan(self, split: str) -> dict[str, np.ndarray]:
        """Per row: origin ('' = the base, else a natural set), row there, label, shift ('' = the reference
        transform only; a natural set's name), tint colour (-1 = none)."""
        self.check_split(split)
        labels = self.base.labels(self._base_split(split))
        rows = np.arange(len(labels))
        seed, k = self.options["seed"], self.num_classes
        # the held-out images' reference tint: one draw, shared by id_test and the flipped set
        reference = (tint_colours(labels, k, self.p, seed, "holdout" if split != "train" else "train")
                     if self.p is not None else np.full(len(labels), -1))
        if split in ("train", "id_test"):
            return {"origin": np.array([""] * len(rows), dtype=object), "row": rows, "label": labels,
                    "shift": np.array([""] * len(rows), dtype=object), "colour": reference}
        parts = []
        for name in self.shifts:
            colour = tint_colours(labels, k, None, seed, f"test-{name}") if SHIFTS[name].tinted else reference
            parts.append({"origin": np.array([""] * len(rows), dtype=object), "row": rows, "label": labels,
                          "shift": np.array([name] * len(rows), dtype=object), "colour": colour})
        for name, src in self.natural.items():  # labels by class id: its classes may be a superset of the base's
            index = {c: i for i, c in enumerate(self.classes)}
            theirs = np.array([index.get(c, -1) for c in src.classes])[src.labels("test")]
            keep = np.flatnonzero(theirs >= 0)
            parts.append({"origin": np.array([name] * len(keep), dtype=object), "row": keep, "label": theirs[keep],
                          "shift": np.array([name] * len(keep), dtype=object), "colour": np.full(len(keep), -1)})
        return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}

    def labels(self, split: str) -> np.ndarray:
        return self.plan(split)["label"]

    def domains(self, split: str) -> np.ndarray | None:
        return self.plan(split)["shift"] if split == "test" else None

    def content_hash(self, split: str) -> str:
        natural = {n: s.content_hash("test") for n, s in self.natural.items()} if split == "test" else {}
        blob = json.dumps({"source": self.name, "split": split, "options": self.options,
                           "base": self.base.content_hash(self._base_split(split)), "natural": natural},
                          sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()

    def images(self, split: str, resolution: int) -> ShiftedImages:
        sets = {"": self.base.images(self._base_split(split), resolution)}
        if split == "test":
            sets.update({n: s.images("test", resolution) for n, s in self.natural.items()})
        return ShiftedImages(sets, self.plan(split), self.colours, self.options["alpha"])

    def _write(self, split: str, resolution: int, path: Path, num_workers: int) -> None:
        images = self.images(split, resolution)
        raw = resolution <= 64  # small generated images stay exact; natural images are stored as JPEG
        ensure_beton(path, lambda: images, estimated_bytes=len(images) * (resolution**2 * 3 + 64),
                     max_resolution=resolution, num_workers=num_workers, write_mode="raw" if raw else "jpg")

    def describe(self) -> dict:
        """Sizes, the shift's parameters, each shifted set's support and the measured tint/label agreement."""
        out = super().describe()
        agreement = {}
        for split in self.splits:
            plan = self.plan(split)
            for name in dict.fromkeys(plan["shift"].tolist()):
                rows = (plan["shift"] == name) & (plan["colour"] >= 0)
                if rows.any():
                    agree = plan["colour"][rows] == plan["label"][rows]
                    agreement[f"{split}/{name or 'reference'}"] = float(np.mean(agree))
        out.update(base=self.base.name, p=self.p, alpha=self.options["alpha"], colours=self.colours.round(4).tolist(),
                   support={name: support_of(name, self.p) for name in self.shifts}, tint_label_agreement=agreement,
                   natural=list(self.natural))
        return out


class ShiftedImages:
    """A split's images under its plan, as FFCV's writer reads them: (uint8 H x W x 3, label)."""

    def __init__(self, sets: dict, plan: dict, colours: np.ndarray, alpha: float):
        self.sets, self.plan, self.colours, self.alpha = sets, plan, colours, alpha

    def __len__(self) -> int:
        return len(self.plan["label"])

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        origin = self.plan["origin"][i]
        image, label = self.sets[origin][int(self.plan["row"][i])]
        if origin:  # a natural set's own label numbering; the plan holds the base's
            return np.ascontiguousarray(image), int(self.plan["label"][i])
        if int(label) != int(self.plan["label"][i]):
            raise RuntimeError(f"support_shift: row {i} has label {label} in the base but {self.plan['label'][i]} "
                               "in the plan")
        colour = int(self.plan["colour"][i])
        if colour >= 0:
            image = tint(image, self.colours[colour], self.alpha)
        shift = self.plan["shift"][i]
        if shift in SHIFTS and not SHIFTS[shift].tinted:
            image = SHIFTS[shift].transform(image)
        return np.ascontiguousarray(image), int(label)


@register_source("support_shift")
def support_shift(data_root=None, base: str = "synthnet", base_options: dict | None = None, p: float | None = None,
                  shifts: tuple[str, ...] | list[str] = ("tint",), alpha: float = ALPHA, seed: int = 0,
                  natural: tuple[str, ...] | list[str] = (), resolution: int | None = None) -> ShiftedSource:
    """A reference distribution (base's images tinted with correlation `p`, untinted when None) and
    its shifted test sets: `shifts` (registered in `datasets.shifts.transforms.SHIFTS`) and `natural`
    sources whose `test` split shares the base's class ids (e.g. `imagenet_v2`, `imagenet_sketch`)."""
    shifts = check_shifts(shifts) if shifts or not natural else ()
    if p is not None:
        check_p(p)
    if not 0 < alpha <= 1:
        raise SourceError(f"support_shift: alpha={alpha!r} is not an opacity in (0, 1]")
    base_options = dict(base_options or {})
    source = get_source(base, data_root, **base_options)
    if source.num_classes < 2:
        raise SourceError(f"support_shift: base '{base}' has {source.num_classes} class; a tint needs at least 2")
    natural_sources = {n: get_source(n, data_root) for n in natural}
    for n, src in natural_sources.items():
        if not set(source.classes) & set(src.classes) or "test" not in src.splits:
            raise SourceError(f"support_shift: natural set '{n}' shares no class with '{base}' or has no test split; "
                              "use a source labelled like the base (imagenet_v2 and imagenet_sketch for imagenet)")
    options = dict(base=base, base_options=base_options, p=p, shifts=list(shifts), alpha=alpha, seed=seed,
                   **({"natural": list(natural)} if natural else {}))
    name = f"support_shift-{'untinted' if p is None else f'p{p:g}'}"
    return ShiftedSource(name=name, options=options, splits=("train", "id_test", "test"), classes=list(source.classes),
                         eval_splits={"id": "id_test", "ood": "test"}, holdout_split="id_test",
                         native_resolution=resolution or source.native_resolution, base=source, natural=natural_sources)
