"""`synthdomains`: a generated DomainNet-like source, the same classes rendered in several styles.

The embedded stand-in for DomainNet (six domains of 345 classes). Classes are random ILSVRC-2012
classes drawn with `datasets.generators.render` (so a model pre-trained on `synthnet` has seen
their kind of object), each image in one style:

- `real`: the object over a cluttered photo-like background, as `synthnet` draws it;
- `clipart`: flat colours (no texture), few colour levels, plain light background;
- `sketch`: grey pencil strokes on white: the edges of the drawn object, texture included;
- `infograph`: a smaller object among coloured bars and blocks, as in an information graphic.

Like DomainNet each domain has its own train and test images. As a pre-training source the
splits `train` and `test` pool the selected `domains` (`domains(split)` tags each row); as a
target, `domain="sketch"` (say) makes `train` / `id_test` that domain's and `test` the other
domains' test images, each of which is also evaluated on its own (`ood_<domain>_*` metrics).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np

from datasets.generators.render import class_traits, clutter_background, draw_object, hsv_to_rgb, stable_seed, to_uint8
from datasets.generators.synthetic import GeneratedSource, _wordnet_classes
from datasets.sources import SourceError, register_source

STYLES = ("real", "clipart", "sketch", "infograph")


def _real(traits, size: int, rng: np.random.Generator) -> np.ndarray:
    canvas = clutter_background(size, rng)
    draw_object(canvas, traits, rng)
    return to_uint8(canvas, rng)


def _clipart(traits, size: int, rng: np.random.Generator) -> np.ndarray:
    canvas = np.full((size, size, 3), rng.uniform(0.85, 1.0))
    draw_object(canvas, replace(traits, texture="plain"), rng, colour_jitter=0.02)
    return to_uint8(np.round(canvas * 4) / 4, rng, noise=0.01)  # a few flat colour levels


def _sketch(traits, size: int, rng: np.random.Generator) -> np.ndarray:
    canvas = np.full((size, size, 3), 0.5)
    draw_object(canvas, traits, rng)
    gy, gx = np.gradient(canvas.mean(axis=-1))
    strokes = np.clip(np.hypot(gx, gy) * rng.uniform(3.0, 5.0), 0, 1)
    paper = 1.0 - strokes * rng.uniform(0.7, 0.95)
    return to_uint8(np.repeat(paper[..., None], 3, axis=-1), rng, noise=0.02)


def _infograph(traits, size: int, rng: np.random.Generator) -> np.ndarray:
    canvas = np.full((size, size, 3), rng.uniform(0.9, 1.0))
    for _ in range(rng.integers(3, 7)):  # bars and blocks of a chart or a text column
        y0, x0 = rng.integers(0, size - 2, size=2)
        h, w = rng.integers(1, max(2, size // 6)), rng.integers(size // 6, size // 2)
        canvas[y0:y0 + h, x0:x0 + w] = hsv_to_rgb(rng.uniform(), rng.uniform(0.3, 0.9), rng.uniform(0.3, 0.9))
    draw_object(canvas, traits, rng, scale=(0.3, 0.5))
    return to_uint8(canvas, rng, noise=0.015)


DRAW = {"real": _real, "clipart": _clipart, "sketch": _sketch, "infograph": _infograph}


@dataclass
class SynthDomains(GeneratedSource):
    """Per split a plan of (label, domain, base split, index within that domain's base split)."""

    @cached_property
    def traits(self):
        from datasets.hierarchy import hypernym_path

        return [class_traits(hypernym_path(wnid)) for wnid in self.classes]

    def _rows(self, domain: str, base: str) -> dict[str, np.ndarray]:
        per = self.options["train_per_class"] if base == "train" else self.options["test_per_class"]
        n = per * self.num_classes
        return {"label": np.repeat(np.arange(self.num_classes), per), "domain": np.array([domain] * n, dtype=object),
                "base": np.array([base] * n, dtype=object), "k": np.arange(n)}

    def plan(self, split: str) -> dict[str, np.ndarray]:
        self.check_split(split)
        own, domains = self.options["domain"], self.options["domains"]
        if own is None:
            parts = [self._rows(d, split) for d in domains]
        elif split in ("train", "id_test"):
            parts = [self._rows(own, "train" if split == "train" else "test")]
        else:
            parts = [self._rows(d, "test") for d in domains if d != own]
        return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}

    def domains(self, split: str) -> np.ndarray:
        return self.plan(split)["domain"]

    def render_one(self, split: str, i: int, plan: dict, resolution: int) -> np.ndarray:
        domain = plan["domain"][i]
        rng = np.random.default_rng(stable_seed("synthdomains", self.options["seed"], domain, plan["base"][i],
                                                int(plan["k"][i])))
        return DRAW[domain](self.traits[plan["label"][i]], resolution, rng)


@register_source("synthdomains")
def synthdomains(data_root=None, num_classes: int = 20, train_per_class: int = 30, test_per_class: int = 10,
                 domains: tuple[str, ...] | list[str] = STYLES, domain: str | None = None, seed: int = 0,
                 resolution: int = 32) -> SynthDomains:
    """DomainNet-like: `num_classes` ILSVRC-2012 classes in each of `domains`; `domain` makes it a target."""
    from datasets.hierarchy import imagenet_wnids

    del data_root  # generated: --data-root is for the on-disk sources
    domains = tuple(domains)
    bad = [d for d in domains + ((domain,) if domain else ()) if d not in STYLES]
    if bad:
        raise SourceError(f"synthdomains: unknown domain '{bad[0]}'; domains: {', '.join(STYLES)}")
    if domain is not None and domain not in domains:
        domains = domains + (domain,)
    if domain is not None and len(domains) < 2:
        raise SourceError(f"synthdomains: domain='{domain}' as target needs other domains for OOD; add some to domains=")
    classes = _wordnet_classes(imagenet_wnids(), num_classes, seed + 2, "synthdomains")
    options = dict(num_classes=num_classes, train_per_class=train_per_class, test_per_class=test_per_class,
                   domains=list(domains), domain=domain, seed=seed)
    if domain is None:
        return SynthDomains(name="synthdomains", options=options, splits=("train", "test"), classes=classes,
                            eval_splits={"test": "test"}, native_resolution=resolution, holdout_split="test")
    return SynthDomains(name=f"synthdomains-{domain}", options=options, splits=("train", "id_test", "test"),
                        classes=classes, eval_splits={"id": "id_test", "ood": "test"}, native_resolution=resolution,
                        holdout_split="test")
