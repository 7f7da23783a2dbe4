"""WordNet interventions on ImageNet-like sources: `semantics` (animal vs object) and `depth` (label granularity)."""
from __future__ import annotations

import functools

import numpy as np

from datasets.interventions.core import InterventionError, Subset, register_intervention
from datasets.interventions.sampling import _count, class_rows, draw, fill_balanced, subset_from_rows, wnid_source
from datasets.sources import Source


@functools.lru_cache(maxsize=64)
def _animal_mask(wnids: tuple[str, ...]) -> np.ndarray:
    from datasets.hierarchy import is_under

    return np.array([is_under(w, "animal.n.01") for w in wnids])


@register_intervention("semantics")
def semantics(src: Source, value: str, seed: int, balanced: bool = True) -> Subset:
    """The classes under WordNet's `animal.n.01` ("animal") or all the others ("object").

    docs/PROTOCOL.md 4.3: 398 vs 602 of ImageNet's 1000 classes. With `balanced` (the
    default) the side with more images is subsampled, class-balanced (`fill_balanced`, seeded),
    to the other side's image count, counted over the whole source, so the "animal" and
    "object" subsets of one source have equal sizes; the smaller side keeps all its images.
    Labels are the side's classes renumbered in source order.
    """
    if value not in ("animal", "object"):
        raise InterventionError(f"semantics: value={value!r} must be 'animal' or 'object'")
    animal = _animal_mask(wnid_source(src, "semantics"))
    labels = src.labels("train")
    groups = class_rows(labels, src.num_classes)
    counts = np.array([len(g) for g in groups])
    sides = {"animal": np.flatnonzero(animal), "object": np.flatnonzero(~animal)}
    if not all(len(s) for s in sides.values()):
        empty = "animal" if not len(sides["animal"]) else "object"
        raise InterventionError(f"semantics: source '{src.name}' has no {empty} classes (under animal.n.01 or not); "
                                "use a source with both")
    chosen = sides[value]
    images = {k: int(counts[s].sum()) for k, s in sides.items()}
    target = min(images.values()) if balanced else images[value]
    rng = np.random.default_rng(seed)
    per_class = fill_balanced(counts[chosen], target, rng)
    label_map = np.full(src.num_classes, -1)
    label_map[chosen] = np.arange(len(chosen))
    return subset_from_rows(labels, draw(groups, chosen, per_class, rng), label_map, balanced=bool(balanced),
                            source_images=images, source_classes={k: len(s) for k, s in sides.items()})


@functools.lru_cache(maxsize=64)
def _superclass_of(wnids: tuple[str, ...], depth: int) -> tuple[str, ...]:
    from datasets.hierarchy import imagenet_superclasses

    mapping = imagenet_superclasses(wnids, depth)
    return tuple(mapping[w] for w in wnids)


@register_intervention("depth")
def depth(src: Source, value, seed: int) -> Subset:
    """Labels contracted along a hierarchy; every image is kept, only labels change.

    ImageNet-like sources: `value` is the WordNet depth d of
    `datasets.hierarchy.imagenet_superclasses` (2/4/5/6/7 give 5/17/37/85/232 classes on
    ImageNet-1k); new labels number the superclass wnids in sorted order. iNaturalist (a
    source with supercategories): `value` = "supercategory", species -> its 13
    supercategories, numbered in sorted name order. Not random: the seed is unused.
    """
    labels = src.labels("train")
    if src.supercategories is not None:
        if value != "supercategory":
            raise InterventionError(f"depth: value={value!r} on source '{src.name}' (species with supercategories): "
                                    "its only contraction is value='supercategory'")
        parent = list(src.supercategories)
    else:
        wnids = wnid_source(src, "depth")
        d = _count(value, "depth: value", "build_subset(src, 'depth', 5) (WordNet depth 2, 4, 5, 6 or 7)", minimum=0)
        parent = list(_superclass_of(wnids, d))
    names = sorted(set(parent))
    label_map = np.searchsorted(np.array(names), np.array(parent))
    description = {"classes": names, "source_classes_per_class": np.bincount(label_map, minlength=len(names)).tolist()}
    if src.supercategories is None:
        from datasets.hierarchy import synset_of

        description["class_names"] = [synset_of(w).name() for w in names]
    return subset_from_rows(labels, np.arange(len(labels)), label_map, **description)
