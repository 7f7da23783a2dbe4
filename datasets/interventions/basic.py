"""Interventions that select images: `full`, `quantity`, `classes` (k classes at a budget), `domain`."""
from __future__ import annotations

import numpy as np

from datasets.interventions.core import InsufficientData, InterventionError, Subset, register_intervention
from datasets.interventions.sampling import _count, class_rows, draw, spread, subset_from_rows
from datasets.sources import Source


@register_intervention("full")
def full(src: Source, value, seed: int) -> Subset:
    """The whole train split with its own labels."""
    labels = src.labels("train")
    return subset_from_rows(labels, np.arange(len(labels)), np.arange(src.num_classes))


@register_intervention("clip")
def clip(src: Source, value, seed: int) -> Subset:
    """The whole train split; pre-training pairs each image with captions of its class instead of
    its label (contrastive image-text learning, `engine.clip`). Not random."""
    labels = src.labels("train")
    return subset_from_rows(labels, np.arange(len(labels)), np.arange(src.num_classes),
                            supervision="captions of each image's class (CLIP-style contrastive)")


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
        raise InsufficientData(
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
    """`value` = k random classes sharing a fixed `budget` of images (docs/PROTOCOL.md 4.4a).

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
        raise InsufficientData(
            f"classes: budget={budget} over {k} classes needs {per_class[short[0]]} images per class but class "
            f"'{src.classes[c]}' of source '{src.name}' has {counts[short[0]]}; the {k} classes of seed {seed} "
            f"can fill a budget of at most {int(counts.min()) * k} (or choose more classes)"
        )
    label_map = np.full(src.num_classes, -1)
    label_map[chosen] = np.arange(k)
    return subset_from_rows(labels, draw(groups, chosen, per_class, rng), label_map, budget=budget)


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
