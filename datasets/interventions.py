"""Interventions on a pre-training source: index lists and label maps over its train split.

An intervention never copies images: it picks rows of the source's train `.beton` and maps
their labels. Each is one registered function; `build_subset` looks it up by name. Every one
is deterministic given its seed. Rules and errors per intervention: datasets/README.md.

Sampling works on rows grouped by class once (`class_rows`, one stable argsort), so a subset
of ImageNet's 1.28 M rows takes well under a second.
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from datasets.sources import Source


class InterventionError(ValueError):
    """An impossible or unknown intervention; the message is one line that says the fix."""


@dataclass
class Subset:
    """Rows of the source's train split and the label each gets."""

    indices: np.ndarray          # rows of the train split (sorted; repeats only when sampled with replacement)
    labels: np.ndarray           # new label of each chosen row, 0..num_classes-1
    num_classes: int
    label_map: np.ndarray        # source class -> new label, -1 where the class is unused
    description: dict = field(default_factory=dict)


INTERVENTIONS: dict[str, Callable[..., Subset]] = {}


def register_intervention(name: str) -> Callable:
    """Decorator: register `f(src, value, seed, **params) -> Subset` under `name`."""

    def wrap(fn: Callable[..., Subset]) -> Callable[..., Subset]:
        INTERVENTIONS[name] = fn
        return fn

    return wrap


def build_subset(src: Source, intervention: str, value=None, seed: int = 0, **params) -> Subset:
    """The subset of `src`'s train split that `intervention` at `value` selects (deterministic by seed).

    The description holds what a report shows: sizes, the new classes (label order), images
    per new class, whether rows repeat, plus the intervention's own facts.
    """
    if intervention not in INTERVENTIONS:
        raise InterventionError(
            f"unknown intervention '{intervention}'; known: {', '.join(sorted(INTERVENTIONS))}"
        )
    try:
        subset = INTERVENTIONS[intervention](src, value, seed, **params)
    except TypeError as e:  # an unknown keyword: say which intervention and what it takes
        if "unexpected keyword argument" not in str(e):
            raise
        raise InterventionError(f"{intervention}: {e}; see datasets/README.md for its parameters") from None
    own = subset.description
    replaced = bool(own.pop("with_replacement", False))
    if not replaced and np.any(np.diff(subset.indices) == 0):  # indices are sorted
        raise AssertionError(f"{intervention} repeated rows without saying it samples with replacement")
    if "classes" not in own:  # one source class per new label: name the labels by those classes
        used = np.flatnonzero(subset.label_map >= 0)
        own["classes"] = [src.classes[c] for c in used[np.argsort(subset.label_map[used], kind="stable")]]
    subset.description = {
        "source": src.name,
        "intervention": intervention,
        "value": value,
        "seed": seed,
        "params": dict(params),
        "num_images": len(subset.indices),
        "num_classes": int(subset.num_classes),
        "images_per_class": np.bincount(subset.labels, minlength=subset.num_classes).tolist(),
        "with_replacement": replaced,
        **own,
    }
    return subset


# ----------------------------------------------------------------------------- helpers


def subset_from_rows(labels: np.ndarray, rows: np.ndarray, label_map: np.ndarray, **description) -> Subset:
    rows = np.sort(rows)
    new = label_map[labels[rows]]
    return Subset(rows, new, int(label_map.max()) + 1, label_map, dict(description))


def class_rows(labels: np.ndarray, num_classes: int, rows: np.ndarray | None = None) -> list[np.ndarray]:
    """Per class, its rows (ascending): of the whole split, or only of `rows` (e.g. one domain)."""
    rows = np.arange(len(labels)) if rows is None else np.sort(rows)
    sub = labels[rows]
    order = rows[np.argsort(sub, kind="stable")]
    return np.split(order, np.cumsum(np.bincount(sub, minlength=num_classes))[:-1])


def spread(total: int, parts: int, rng: np.random.Generator) -> np.ndarray:
    """`total` split over `parts` as evenly as possible: `total % parts` random parts get one more."""
    per = np.full(parts, total // parts)
    per[rng.choice(parts, size=total % parts, replace=False)] += 1
    return per


def fill_balanced(counts: np.ndarray, total: int, rng: np.random.Generator) -> np.ndarray:
    """Class-balanced counts summing to `total`, none above `counts` (water-filling).

    Every class gets min(count, t) for the largest level t that fits; the few images left
    go one each to random classes that still have more. Needs total <= counts.sum().
    """
    lo, hi = 0, int(counts.max())
    while lo < hi:  # largest t with sum(min(counts, t)) <= total
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if np.minimum(counts, mid).sum() <= total else (lo, mid - 1)
    per = np.minimum(counts, lo)
    room = np.flatnonzero(counts > lo)
    per[rng.choice(room, size=total - int(per.sum()), replace=False)] += 1
    return per


def draw(groups: list[np.ndarray], classes, per_class, rng: np.random.Generator, replace=False) -> np.ndarray:
    """`per_class[i]` random rows of class `classes[i]` (with replacement where `replace[i]`)."""
    replace = np.broadcast_to(replace, len(per_class))
    picks = [rng.choice(groups[c], size=int(k), replace=bool(r)) for c, k, r in zip(classes, per_class, replace)]
    return np.concatenate(picks) if picks else np.zeros(0, dtype=np.int64)


def _count(value, what: str, example: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InterventionError(f"{what}={value!r} must be an integer >= {minimum}, e.g. {example}")
    return int(value)


def wnid_source(src: Source, intervention: str) -> tuple[str, ...]:
    """The classes of an ImageNet-like source (all wnids), or a one-line error saying why not."""
    from datasets.hierarchy import is_wnid

    bad = [c for c in src.classes if not is_wnid(c)]
    if bad or not src.classes:
        raise InterventionError(
            f"{intervention}: source '{src.name}' is not ImageNet-like (class {bad[0] if bad else None!r} is not a "
            f"WordNet id like n01440764); {intervention} needs WordNet classes"
            + ("" if src.supercategories is None else " or, for iNaturalist, its supercategories")
        )
    return tuple(src.classes)


# ------------------------------------------------------------------------ interventions


@register_intervention("full")
def full(src: Source, value, seed: int) -> Subset:
    """The whole train split with its own labels."""
    labels = src.labels("train")
    return subset_from_rows(labels, np.arange(len(labels)), np.arange(src.num_classes))


@register_intervention("quantity")
def quantity(src: Source, value: int, seed: int, num_classes: int | None = None, domain: str | None = None) -> Subset:
    """A class-balanced random subset of `value` images (no repeats).

    Every class gets `value // C` images; when `value` does not divide evenly, the remaining
    `value % C` images go one each to randomly chosen classes (seeded), so class sizes differ by
    at most one. `num_classes` restricts the subset to the most frequent classes (ties broken by
    class order), as the paper does for iNaturalist (its 1000 most frequent species). `domain`
    (DomainNet) draws only from that domain's train rows.
    """
    labels = src.labels("train")
    pool = None if domain is None else domain_rows(src, "train", domain)
    groups = class_rows(labels, src.num_classes, pool)
    counts = np.array([len(g) for g in groups])
    classes = np.arange(src.num_classes)
    if num_classes is not None:
        if not 0 < num_classes <= src.num_classes:
            raise InterventionError(
                f"quantity: num_classes={num_classes} but source '{src.name}' has {src.num_classes} classes"
            )
        classes = np.sort(np.argsort(-counts, kind="stable")[:num_classes])
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < len(classes):
        raise InterventionError(
            f"quantity: value={value!r} must be an integer of at least one image per class ({len(classes)})"
        )
    rng = np.random.default_rng(seed)
    per_class = spread(value, len(classes), rng)
    short = np.flatnonzero(counts[classes] < per_class)
    if len(short):
        c = classes[short[0]]
        where = f"source '{src.name}'" + ("" if domain is None else f" in domain '{domain}'")
        raise InterventionError(
            f"quantity: {value} class-balanced images need {per_class[short[0]]} per class but class "
            f"'{src.classes[c]}' of {where} has {counts[c]} ({int(counts.sum())} train images in all); "
            f"choose a size of at most {int(counts[classes].min()) * len(classes)}"
        )
    rows = draw(groups, classes, per_class, rng)
    label_map = np.full(src.num_classes, -1)
    label_map[classes] = np.arange(len(classes))
    return subset_from_rows(labels, rows, label_map, **({} if domain is None else {"domain": domain}))


@register_intervention("classes")
def classes_at_budget(src: Source, value: int, seed: int, budget: int | None = None) -> Subset:
    """`value` = k random classes sharing a fixed `budget` of images (PAPER.md section 4 item 4a).

    The k classes are the first k of a seeded permutation of all classes, so for one seed the
    classes of a smaller k are among those of a larger k. Each gets `budget // k` images (no
    repeats); a remainder goes one each to random chosen classes, as in `quantity`. A chosen
    class with too few images is an error that says the largest budget these classes can fill.
    """
    k = _count(value, "classes: value", "build_subset(src, 'classes', 100, budget=60000)")
    if k > src.num_classes:
        raise InterventionError(f"classes: value={k} but source '{src.name}' has only {src.num_classes} classes; "
                                f"choose at most {src.num_classes}")
    if budget is None:
        raise InterventionError("classes: give the fixed image budget, e.g. build_subset(src, 'classes', 100, "
                                "budget=60000)")
    budget = _count(budget, "classes: budget", f"budget={k * 600} (at least one image per class)", minimum=k)
    labels = src.labels("train")
    groups = class_rows(labels, src.num_classes)
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.permutation(src.num_classes)[:k])  # drawn first: nested over k for a seed
    per_class = spread(budget, k, rng)
    counts = np.array([len(groups[c]) for c in chosen])
    short = np.flatnonzero(counts < per_class)
    if len(short):
        c = chosen[short[0]]
        raise InterventionError(
            f"classes: budget={budget} over {k} classes needs {per_class[short[0]]} images per class but class "
            f"'{src.classes[c]}' of source '{src.name}' has {counts[short[0]]}; the {k} classes of seed {seed} "
            f"can fill a budget of at most {int(counts.min()) * k} (or choose more classes)"
        )
    label_map = np.full(src.num_classes, -1)
    label_map[chosen] = np.arange(k)
    return subset_from_rows(labels, draw(groups, chosen, per_class, rng), label_map, budget=budget)


@functools.lru_cache(maxsize=64)
def _animal_mask(wnids: tuple[str, ...]) -> np.ndarray:
    from datasets.hierarchy import is_under

    return np.array([is_under(w, "animal.n.01") for w in wnids])


@register_intervention("semantics")
def semantics(src: Source, value: str, seed: int, balanced: bool = True) -> Subset:
    """The classes under WordNet's `animal.n.01` ("animal") or all the others ("object").

    PAPER.md section 4 item 3: 398 vs 602 of ImageNet's 1000 classes. With `balanced` (the
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


def domain_rows(src: Source, split: str, domain: str) -> np.ndarray:
    """Rows (ascending) of `split` that belong to `domain` (DomainNet), e.g. `domain_rows(src, "test", "sketch")`.

    This is how one domain's train and test selections are made: DomainNet's own per-domain
    `*_train.txt` / `*_test.txt` lists, tagged per row by `src.domains(split)`. Domains never share rows.
    """
    tags = src.domains(split)
    if tags is None:
        raise InterventionError(f"domain: source '{src.name}' has no domains; use a multi-domain source such as "
                                "domainnet")
    known = sorted(set(tags.tolist()))
    if domain not in known:
        raise InterventionError(f"domain: value={domain!r} is not a domain of source '{src.name}'; its domains: "
                                f"{', '.join(map(str, known))}")
    return np.flatnonzero(tags == domain)


@register_intervention("domain")
def domain(src: Source, value: str, seed: int) -> Subset:
    """All train rows of one domain (DomainNet), labels unchanged. Not random.

    The matching evaluation rows are `domain_rows(src, "test", value)`; for quantity within a
    domain use `build_subset(src, "quantity", n, domain=value)`.
    """
    labels = src.labels("train")
    label_map = np.arange(src.num_classes)
    return subset_from_rows(labels, domain_rows(src, "train", value), label_map, domain=value,
                            classes=list(src.classes))


import datasets.breeds  # noqa: F401  (registers "diversity"; it needs the helpers above)
