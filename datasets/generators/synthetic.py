"""The embedded sources: procedurally generated, deterministic by seed, sized by options.

- `synthnet`: ImageNet-like pre-training data. Its classes are real ImageNet (WordNet) synsets,
  animals and objects, drawn with the traits of `datasets.generators.render`, so classes that share a
  WordNet ancestor share visual traits and every WordNet intervention runs on it unchanged.
- `synthcam`: an iWildCam-like target. Animal species in front of camera-trap scenes (ground,
  sky, vegetation) under per-image lighting and night-time infrared, long-tailed, with each
  location favouring some species. Splits as in WILDS: `train`, `id_val`, `id_test` (the
  training locations, other days), `val` and `test` (new locations, disjoint from each other).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import ClassVar

import numpy as np

from datasets.storage.beton import ensure_beton
from datasets.generators.render import (
    RENDER_VERSION,
    class_traits,
    clutter_background,
    draw_object,
    hsv_to_rgb,
    stable_seed,
    to_uint8,
)
from datasets.sources import WILDS_EVAL_SPLITS, Source, SourceError, register_source



@dataclass
class GeneratedSource(Source):
    """A source whose images are rendered on demand from a per-split plan."""

    # Bump when what this generator draws changes (and `RENDER_VERSION` when the shared renderer
    # does): both are part of the cache key of its `.beton` files and cached data, so files drawn by
    # an older generator are rebuilt, never reused.
    generator_version: ClassVar[int] = 1

    def content_hash(self, split: str) -> str:
        generator = {"generator": type(self).__name__, "version": self.generator_version, "render": RENDER_VERSION}
        blob = json.dumps({"source": self.name, "split": split, "options": self.options, **generator}, sort_keys=True,
                          default=str)
        return hashlib.sha256(blob.encode()).hexdigest()

    def plan(self, split: str) -> dict[str, np.ndarray]:
        """Per-example arrays (at least 'label') that fully determine the split's images."""
        raise NotImplementedError

    def labels(self, split: str) -> np.ndarray:
        self.check_split(split)
        return self.plan(split)["label"]

    def render(self, split: str, resolution: int, indices=None) -> np.ndarray:
        """Images of `split` (N, resolution, resolution, 3) uint8; all of them unless `indices`."""
        plan = self.plan(split)
        rows = range(len(plan["label"])) if indices is None else indices
        return np.stack([self.render_one(split, i, plan, resolution) for i in rows])

    def render_one(self, split: str, i: int, plan: dict, resolution: int) -> np.ndarray:
        raise NotImplementedError

    def images(self, split: str, resolution: int) -> "RenderedImages":
        return RenderedImages(self, split, resolution)

    def _write(self, split: str, resolution: int, path: Path, num_workers: int) -> None:
        n = len(self.plan(split)["label"])
        ensure_beton(path, lambda: RenderedImages(self, split, resolution), estimated_bytes=n * (resolution**2 * 3 + 64),
                     max_resolution=resolution, num_workers=num_workers)


class RenderedImages:
    """A generated split rendered on demand inside FFCV's writer processes (on `num_workers` cores)."""

    def __init__(self, src: GeneratedSource, split: str, resolution: int):
        self.src, self.split, self.plan, self.resolution = src, split, src.plan(split), resolution

    def __len__(self) -> int:
        return len(self.plan["label"])

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        return self.src.render_one(self.split, i, self.plan, self.resolution), int(self.plan["label"][i])


def _wordnet_classes(pool: list[str], count: int, seed: int, what: str) -> list[str]:
    if count > len(pool):
        raise SourceError(f"{what}: num_classes={count} but only {len(pool)} classes are available; lower num_classes")
    rng = np.random.default_rng(seed)
    return sorted(rng.choice(pool, size=count, replace=False).tolist())


@dataclass
class SynthNet(GeneratedSource):
    @cached_property
    def traits(self):
        from datasets.hierarchy import hypernym_path

        return [class_traits(hypernym_path(wnid)) for wnid in self.classes]

    def plan(self, split: str) -> dict[str, np.ndarray]:
        self.check_split(split)
        per_class = self.options["images_per_class"] if split == "train" else self.options["val_per_class"]
        return {"label": np.repeat(np.arange(self.num_classes), per_class)}

    def render_one(self, split: str, i: int, plan: dict, resolution: int) -> np.ndarray:
        rng = np.random.default_rng(stable_seed(self.name, self.options["seed"], split, i))
        canvas = clutter_background(resolution, rng)
        draw_object(canvas, self.traits[plan["label"][i]], rng)
        return to_uint8(canvas, rng)


@register_source("synthnet")
def synthnet(data_root=None, num_classes: int = 50, images_per_class: int = 80, val_per_class: int = 10,
             seed: int = 0, resolution: int = 32) -> SynthNet:
    """ImageNet-like: `num_classes` random ILSVRC-2012 classes, class-balanced."""
    from datasets.hierarchy import imagenet_wnids

    del data_root  # embedded: --data-root is for the on-disk sources
    classes = _wordnet_classes(imagenet_wnids(), num_classes, seed, "synthnet")
    options = dict(num_classes=num_classes, images_per_class=images_per_class, val_per_class=val_per_class, seed=seed)
    return SynthNet(name="synthnet", options=options, splits=("train", "val"), classes=classes,
                    eval_splits={"val": "val"}, native_resolution=resolution)


@register_source("synthnet_breeds")
def synthnet_breeds(data_root=None, images_per_class: int = 30, val_per_class: int = 5, seed: int = 0,
                    resolution: int = 32) -> SynthNet:
    """`synthnet` over the 192 ImageNet classes of the BREEDS table (16 superclasses x 12), for `diversity`."""
    from datasets.interventions.breeds import breeds_table

    del data_root
    classes = sorted(w for _, subclasses in breeds_table() for _, w in subclasses)
    options = dict(num_classes=len(classes), images_per_class=images_per_class, val_per_class=val_per_class,
                   seed=seed, classes="breeds")
    return SynthNet(name="synthnet_breeds", options=options, splits=("train", "val"), classes=classes,
                    eval_splits={"val": "val"}, native_resolution=resolution)


@dataclass
class Scene:
    """A camera location: what its background looks like and how it is lit."""

    ground: np.ndarray
    sky: np.ndarray
    horizon: float
    slope: float
    bushes: np.ndarray  # (k, 4): x, y, radius, shade
    night_rate: float
    tint: np.ndarray


def make_scene(seed: int) -> Scene:
    rng = np.random.default_rng(seed)
    return Scene(
        ground=hsv_to_rgb(rng.uniform(0.05, 0.35), rng.uniform(0.2, 0.7), rng.uniform(0.25, 0.7)),
        sky=hsv_to_rgb(rng.uniform(0.45, 0.7), rng.uniform(0.0, 0.5), rng.uniform(0.5, 0.95)),
        horizon=rng.uniform(0.15, 0.55),
        slope=rng.uniform(-0.3, 0.3),
        bushes=np.column_stack([rng.uniform(0, 1, 6), rng.uniform(0.2, 1, 6), rng.uniform(0.05, 0.25, 6),
                                rng.uniform(0.1, 0.5, 6)]),
        night_rate=rng.uniform(0.1, 0.45),
        tint=rng.normal(0, 0.08, 3),
    )


def draw_scene(scene: Scene, size: int, rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1)
    horizon = scene.horizon + scene.slope * (xx - 0.5) + rng.normal(0, 0.02)
    sky = (yy < horizon)[..., None]
    canvas = np.where(sky, scene.sky, scene.ground * (0.8 + 0.4 * yy[..., None]))
    for bx, by, br, shade in scene.bushes:
        blob = np.clip((br - np.sqrt((xx - bx) ** 2 + ((yy - by) * 1.4) ** 2)) * size, 0, 1)[..., None]
        canvas = canvas * (1 - blob) + np.array([0.1, 0.25 + shade * 0.3, 0.08]) * blob
    return canvas


@dataclass
class SynthCam(GeneratedSource):
    @cached_property
    def wnids(self) -> list[str]:
        return self.options["_wnids"]

    @cached_property
    def traits(self):
        from datasets.hierarchy import hypernym_path

        return [class_traits(hypernym_path(wnid)) for wnid in self.wnids]

    @cached_property
    def locations(self) -> dict[str, np.ndarray]:
        o = self.options
        n_id, n_ood = o["id_locations"], o["ood_locations"]
        ids = np.arange(n_id + 2 * n_ood)
        return {"train": ids[:n_id], "id_val": ids[:n_id], "id_test": ids[:n_id],
                "val": ids[n_id:n_id + n_ood], "test": ids[n_id + n_ood:]}

    @cached_property
    def scenes(self) -> list[Scene]:
        total = self.options["id_locations"] + 2 * self.options["ood_locations"]
        return [make_scene(stable_seed("synthcam-scene", self.options["seed"], k)) for k in range(total)]

    def class_probs(self, location: int) -> np.ndarray:
        """Long-tailed species frequencies, reweighted by what each location sees most."""
        o = self.options
        rng = np.random.default_rng(stable_seed("synthcam-prior", o["seed"]))
        ranks = rng.permutation(self.num_classes)
        prior = (ranks + 1.0) ** -o["tail"]
        affinity = np.exp(np.random.default_rng(stable_seed("synthcam-loc", o["seed"], location))
                          .normal(0, o["location_bias"], self.num_classes))
        p = prior * affinity
        return p / p.sum()

    def plan(self, split: str) -> dict[str, np.ndarray]:
        self.check_split(split)
        o = self.options
        n = o["train_size"] if split == "train" else o["test_size"] if split == "test" else o["eval_size"]
        rng = np.random.default_rng(stable_seed("synthcam-plan", o["seed"], split))
        locs = rng.choice(self.locations[split], size=n)
        labels = np.array([rng.choice(self.num_classes, p=self.class_probs(loc)) for loc in locs])
        return {"label": labels, "location": locs}

    def render_one(self, split: str, i: int, plan: dict, resolution: int) -> np.ndarray:
        rng = np.random.default_rng(stable_seed(self.name, self.options["seed"], split, i))
        scene = self.scenes[plan["location"][i]]
        canvas = draw_scene(scene, resolution, rng)
        draw_object(canvas, self.traits[plan["label"][i]], rng, scale=(0.4, 0.75))
        light = rng.uniform(0.6, 1.15)
        canvas = canvas * light * (1 + scene.tint)
        if rng.uniform() < scene.night_rate:  # infrared night shot: grey, dim, noisy
            canvas = np.repeat(canvas.mean(axis=-1, keepdims=True), 3, axis=-1) * 0.7 + 0.05
            return to_uint8(canvas, rng, noise=0.06)
        return to_uint8(canvas, rng)


@register_source("synthcam")
def synthcam(data_root=None, num_classes: int = 16, train_size: int = 640, eval_size: int = 256,
             test_size: int = 384, id_locations: int = 12, ood_locations: int = 6, tail: float = 1.0,
             location_bias: float = 1.5, seed: int = 0, resolution: int = 32) -> SynthCam:
    """iWildCam-like: mammal and bird species of ILSVRC-2012 at camera-trap locations."""
    from datasets.hierarchy import imagenet_wnids, is_under, synset_of

    del data_root  # embedded: --data-root is for the on-disk sources
    animals = [w for w in imagenet_wnids() if is_under(w, "mammal.n.01") or is_under(w, "bird.n.01")]
    wnids = _wordnet_classes(animals, num_classes, seed + 1, "synthcam")
    names = [synset_of(w).lemma_names()[0].lower() for w in wnids]
    names = [f"{n}_{w}" if names.count(n) > 1 else n for n, w in zip(names, wnids)]
    options = dict(num_classes=num_classes, train_size=train_size, eval_size=eval_size, test_size=test_size,
                   id_locations=id_locations, ood_locations=ood_locations, tail=tail,
                   location_bias=location_bias, seed=seed, _wnids=wnids)
    return SynthCam(name="synthcam", options=options, splits=("train", "id_val", "id_test", "val", "test"),
                    classes=names, eval_splits=dict(WILDS_EVAL_SPLITS), native_resolution=resolution)
