"""Per-class diversity (docs/PROTOCOL.md 4.4b): the `diversity` intervention and its BREEDS table.

The paper names its 16 superclasses x 12 subclasses by ImageNet class names. Package data
``data/breeds_table.txt`` stores each name next to the ILSVRC-2012 wnid it resolves to, so the
``diversity`` intervention needs no WordNet load; :func:`resolve_imagenet_name` is the rule
that produced the wnids, and the tests re-run it on all 192 names against WordNet 3.0.
"""
from __future__ import annotations

import functools

import numpy as np

from datasets.interventions.core import InsufficientData, InterventionError, Subset, register_intervention
from datasets.interventions.sampling import class_rows, draw, fill_balanced, spread, subset_from_rows
from datasets.sources import Source
from datasets.hierarchy.wordnet_setup import package_data

BREEDS_FILE = "breeds_table.txt"
# docs/PROTOCOL.md 4.4b: iNaturalist's diversity superclasses, in the paper's order (= label order).
INAT_SUPERCATEGORIES = ("Plantae", "Insecta", "Mammalia", "Fungi", "Aves", "Reptilia", "Amphibia")


@functools.cache
def breeds_table() -> tuple[tuple[str, tuple[tuple[str, str], ...]], ...]:
    """``((superclass, ((subclass name, wnid), ... 12)), ... 16)`` in the paper's order."""
    rows: dict[str, list[tuple[str, str]]] = {}
    text = package_data(BREEDS_FILE).read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    for line in lines[1:]:  # lines[0] is the header
        superclass, name, wnid = line.split("\t")
        rows.setdefault(superclass, []).append((name, wnid))
    return tuple((s, tuple(subs)) for s, subs in rows.items())


@functools.cache
def _lemma_index() -> dict[str, tuple[str, ...]]:
    """Lower-cased WordNet lemma name -> the ILSVRC-2012 wnids that carry it."""
    from datasets.hierarchy import imagenet_wnids, synset_of

    index: dict[str, list[str]] = {}
    for wnid in imagenet_wnids():
        for lemma in synset_of(wnid).lemma_names():
            index.setdefault(lemma.lower(), []).append(wnid)
    return {k: tuple(v) for k, v in index.items()}


def resolve_imagenet_name(name: str) -> str:
    """The ILSVRC-2012 wnid whose WordNet 3.0 lemma names include ``name``.

    Matching ignores case and reads spaces as underscores ("African grey" -> ``African_grey``).
    Only the 1000 ILSVRC classes are candidates, which is what makes names that are
    ambiguous in WordNet unique here: "kite" is the bird (the toy is not an ILSVRC class),
    "mouse" the computer mouse, "iron" the smoothing iron. Raises ValueError unless exactly
    one class matches.
    """
    hits = _lemma_index().get(name.strip().lower().replace(" ", "_"), ())
    if len(hits) != 1:
        raise ValueError(f"ImageNet class name {name!r} matches {len(hits)} ILSVRC-2012 classes {list(hits)}, not 1")
    return hits[0]


@register_intervention("diversity")
def diversity(src: Source, value: float, seed: int, budget: int = 80000, replace: bool = False) -> Subset:
    """Superclass labels over a fraction `value` = p of each superclass's subclasses, at a fixed budget.

    ImageNet-like sources: the 16 x 12 BREEDS table; each superclass uses round(12 p) of its
    subclasses (p = 0.33, 0.67, 1.0 -> 4, 8, 12), the first ones of a seeded shuffle of its row,
    so for one seed 4 are among 8 are among 12. `budget` is split equally over the 16
    superclasses (remainder to random ones), then class-balanced over the chosen subclasses:
    a subclass with fewer images gives all it has and its siblings give more
    (`fill_balanced`), without repeats. When the chosen subclasses of a superclass cannot
    fill its share, that is an error, unless `replace=True`: then every subclass gets an
    equal share, and a short one uses all its images once plus random repeats.

    iNaturalist (sources with supercategories): the 7 supercategories of INAT_SUPERCATEGORIES,
    each using round(p x its species) species (at least 1, nested by a seeded shuffle), the
    budget split equally over the 7 and then over the chosen species, drawn with
    replacement, as the paper does.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not 0 < value <= 1:
        raise InterventionError(f"diversity: value={value!r} must be the fraction of subclasses used, in (0, 1], "
                                "e.g. 0.33, 0.67 or 1.0")
    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or budget < 1:
        raise InterventionError(f"diversity: budget={budget!r} must be a positive integer, e.g. budget=80000")
    if src.supercategories is not None:
        return _inat_diversity(src, float(value), seed, int(budget))
    return _breeds_diversity(src, float(value), seed, int(budget), bool(replace))


def _breeds_diversity(src: Source, p: float, seed: int, budget: int, replace: bool) -> Subset:
    from datasets.hierarchy import is_wnid

    table = breeds_table()
    index = {c: i for i, c in enumerate(src.classes)}
    missing = [(name, w) for _, subs in table for name, w in subs if w not in index]
    if missing or not all(is_wnid(c) for c in src.classes):
        total = sum(len(subs) for _, subs in table)
        raise InterventionError(
            f"diversity: source '{src.name}' has {total - len(missing)} of the {total} BREEDS subclasses of its "
            f"table, datasets/data/breeds_table.txt (missing {len(missing)}, e.g. {missing[0][0] if missing else '-'} "
            f"{missing[0][1] if missing else ''}); use an ImageNet-like source with all 1000 ILSVRC-2012 classes"
        )
    m = max(1, round(len(table[0][1]) * p))
    rng = np.random.default_rng(seed)
    # The shuffles come first from the seed, so they do not depend on p or the budget (nesting).
    order = [rng.permutation(len(subs)) for _, subs in table]
    share = spread(budget, len(table), rng)
    labels = src.labels("train")
    groups = class_rows(labels, src.num_classes)
    chosen_rows = [[subs[i] for i in perm[:m]] for (_, subs), perm in zip(table, order)]
    totals = np.array([sum(len(groups[index[w]]) for _, w in chosen) for chosen in chosen_rows])
    if not replace and np.any(totals < share):
        s = int(np.argmax(totals < share))
        raise InsufficientData(
            f"diversity: value={p} ({m} subclasses per superclass) at budget={budget} gives '{table[s][0]}' "
            f"{share[s]} images but its {m} subclasses of seed {seed} have {totals[s]}; choose a budget of at most "
            f"{int(totals.min()) * len(table)}, or pass replace=True to draw short subclasses with replacement"
        )
    label_map = np.full(src.num_classes, -1)
    rows, subclasses, per_subclass, resampled = [], {}, {}, []
    for s, ((superclass, _), chosen) in enumerate(zip(table, chosen_rows)):
        cls = np.array([index[w] for _, w in chosen])
        counts = np.array([len(groups[c]) for c in cls])
        if replace:
            per = spread(int(share[s]), m, rng)
            short = counts < per
            resampled += [name for (name, _), sh in zip(chosen, short) if sh]
            # A short subclass uses every image once, then repeats random ones to fill its share.
            rows += [groups[c] for c in cls[short]]
            rows.append(draw(groups, cls, np.where(short, per - counts, per), rng, replace=short))
        else:
            per = fill_balanced(counts, int(share[s]), rng)
            rows.append(draw(groups, cls, per, rng))
        label_map[cls] = s
        subclasses[superclass] = [name for name, _ in chosen]
        per_subclass[superclass] = per.tolist()
    return subset_from_rows(
        labels, np.concatenate(rows), label_map, classes=[s for s, _ in table], subclasses_per_class=m,
        subclasses=subclasses, images_per_subclass=per_subclass, budget=budget,
        with_replacement=bool(resampled), resampled_subclasses=resampled,
    )


def _inat_diversity(src: Source, p: float, seed: int, budget: int) -> Subset:
    sup = np.asarray(src.supercategories)
    absent = [s for s in INAT_SUPERCATEGORIES if not np.any(sup == s)]
    if absent:
        raise InterventionError(f"diversity: source '{src.name}' has no species in supercategories "
                                f"{', '.join(absent)}; iNaturalist diversity needs all of {', '.join(INAT_SUPERCATEGORIES)}")
    rng = np.random.default_rng(seed)
    species = [np.flatnonzero(sup == s) for s in INAT_SUPERCATEGORIES]
    order = [rng.permutation(len(sp)) for sp in species]  # first from the seed: nested over p
    share = spread(budget, len(species), rng)
    labels = src.labels("train")
    groups = class_rows(labels, src.num_classes)
    label_map = np.full(src.num_classes, -1)
    rows, used = [], {}
    for s, (sp, perm) in enumerate(zip(species, order)):
        chosen = np.sort(sp[perm[:max(1, round(len(sp) * p))]])
        empty = [src.classes[c] for c in chosen if not len(groups[c])]
        if empty:
            raise InterventionError(f"diversity: species '{empty[0]}' of source '{src.name}' has no train images")
        rows.append(draw(groups, chosen, spread(int(share[s]), len(chosen), rng), rng, replace=True))
        label_map[chosen] = s
        used[INAT_SUPERCATEGORIES[s]] = len(chosen)
    return subset_from_rows(labels, np.concatenate(rows), label_map, classes=list(INAT_SUPERCATEGORIES),
                            species_per_class=used, budget=budget, with_replacement=True)
