"""Invariants of every intervention (datasets/interventions/).

The sources here are label-only stand-ins (no images): the real 1000 ILSVRC-2012 wnids, an
iNaturalist-like species list with supercategories, a DomainNet-like multi-domain source, and
the embedded synthnet. WordNet is loaded once for the whole module.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

import numpy as np
import pytest

from datasets import Source, get_source
from datasets.interventions.breeds import INAT_SUPERCATEGORIES, breeds_table, resolve_imagenet_name
from datasets.hierarchy import imagenet_superclasses, imagenet_wnids, is_under
from datasets.interventions import InterventionError, Subset, build_subset, domain_rows

EXPECTED_DEPTH = {2: 5, 4: 17, 5: 37, 6: 85, 7: 232}  # docs/PROTOCOL.md 4.2
INAT_13 = ("Actinopterygii", "Amphibia", "Animalia", "Arachnida", "Aves", "Chromista", "Fungi", "Insecta",
           "Mammalia", "Mollusca", "Plantae", "Protozoa", "Reptilia")


@dataclass
class LabelSource(Source):
    """A source that only knows its labels (and optionally per-row domains)."""

    rows: dict = field(default_factory=dict)     # split -> labels
    tags: dict | None = None                     # split -> domain names

    def labels(self, split: str) -> np.ndarray:
        return self.rows[split]

    def domains(self, split: str) -> np.ndarray | None:
        return None if self.tags is None else self.tags[split]


def shuffled_labels(counts, seed: int = 0) -> np.ndarray:
    """Labels with `counts[c]` rows of class c, in a shuffled order (as a real file list is)."""
    labels = np.repeat(np.arange(len(counts)), counts)
    return labels[np.random.default_rng(seed).permutation(len(labels))]


@pytest.fixture(scope="module")
def wnids() -> list[str]:
    return imagenet_wnids()


@pytest.fixture(scope="module")
def small_imagenet(wnids) -> LabelSource:
    """1000 ILSVRC classes with 10..15 rows each."""
    counts = 10 + np.arange(1000) * 7 % 6
    return LabelSource(name="imagenet-small", classes=list(wnids), rows={"train": shuffled_labels(counts)})


@pytest.fixture(scope="module")
def full_imagenet(wnids) -> LabelSource:
    """ImageNet-sized: 1000 classes of 732..1300 rows (1.28 M rows), as ILSVRC-2012's train split."""
    counts = np.full(1000, 1300)
    counts[::37] = 732  # ILSVRC's smallest classes have 732 images
    index = {w: i for i, w in enumerate(wnids)}
    for _, subs in breeds_table():  # BREEDS subclasses: full, but the first of each row a little short
        counts[[index[w] for _, w in subs]] = 1300
        counts[index[subs[0][1]]] = 1200
    return LabelSource(name="imagenet-full", classes=list(wnids), rows={"train": shuffled_labels(counts, 1)})


@pytest.fixture(scope="module")
def inat() -> LabelSource:
    """iNaturalist-like: 13 supercategories, 300 long-tailed species (3..200 rows)."""
    rng = np.random.default_rng(5)
    sup = [INAT_13[i % 13] for i in range(300)]
    counts = np.clip((200 / np.arange(1, 301) ** 0.7).astype(int), 3, None)
    return LabelSource(name="inat-like", classes=[f"species {i}" for i in range(300)],
                       rows={"train": shuffled_labels(rng.permutation(counts))}, supercategories=sup)


@pytest.fixture(scope="module")
def domainnet() -> LabelSource:
    """DomainNet-like: 6 domains x 20 named classes."""
    doms = np.array(["clipart", "infograph", "painting", "quickdraw", "real", "sketch"])
    rng = np.random.default_rng(2)
    rows, tags = {}, {}
    for split, n in (("train", 3000), ("test", 900)):
        rows[split] = rng.integers(0, 20, n)
        tags[split] = doms[rng.integers(0, 6, n)]
    return LabelSource(name="domainnet-like", classes=[f"class {i}" for i in range(20)], rows=rows, tags=tags,
                       splits=("train", "test"))


def check_subset(src: Source, sub: Subset) -> None:
    """What every subset promises: labels follow the label map, rows are valid and sorted."""
    labels = src.labels("train")
    assert sub.indices.ndim == 1 and len(sub.indices) == len(sub.labels) == sub.description["num_images"]
    assert np.all(np.diff(sub.indices) >= 0) and 0 <= sub.indices.min() and sub.indices.max() < len(labels)
    assert np.array_equal(sub.labels, sub.label_map[labels[sub.indices]])
    assert sub.labels.min() >= 0 and sub.labels.max() == sub.num_classes - 1
    assert len(sub.label_map) == src.num_classes and sub.label_map.max() == sub.num_classes - 1
    assert len(sub.description["classes"]) == sub.num_classes == sub.description["num_classes"]
    assert sub.description["images_per_class"] == np.bincount(sub.labels, minlength=sub.num_classes).tolist()
    if not sub.description["with_replacement"]:
        assert len(np.unique(sub.indices)) == len(sub.indices)
    json.dumps(sub.description)  # stored with the trial


def assert_seeded(src: Source, intervention: str, value, **params) -> None:
    a = build_subset(src, intervention, value, seed=0, **params)
    b = build_subset(src, intervention, value, seed=0, **params)
    c = build_subset(src, intervention, value, seed=1, **params)
    assert np.array_equal(a.indices, b.indices) and np.array_equal(a.labels, b.labels)
    assert a.description == b.description
    assert not np.array_equal(a.indices, c.indices)


def one_line_error(match: str, src, intervention, value, **params) -> str:
    with pytest.raises(InterventionError, match=match) as info:
        build_subset(src, intervention, value, **params)
    msg = str(info.value)
    assert "\n" not in msg, msg
    assert msg.startswith((f"{intervention}:", f"unknown intervention '{intervention}'")), msg
    return msg


# ------------------------------------------------------------------------------ depth


def test_depth_gives_the_paper_class_counts(small_imagenet, wnids):
    labels = small_imagenet.labels("train")
    for d, n in EXPECTED_DEPTH.items():
        sub = build_subset(small_imagenet, "depth", d)
        check_subset(small_imagenet, sub)
        assert sub.num_classes == n
        assert np.array_equal(sub.indices, np.arange(len(labels)))  # every image kept
        sup = imagenet_superclasses(wnids, d)
        assert sub.description["classes"] == sorted(set(sup.values()))  # labels in sorted wnid order
        assert [sub.description["classes"][sub.label_map[i]] for i in range(1000)] == [sup[w] for w in wnids]
        assert sum(sub.description["source_classes_per_class"]) == 1000
    names = build_subset(small_imagenet, "depth", 6).description["class_names"]  # readable synset names
    assert len(names) == 85 and "animal.n.01" in names and "dog.n.01" not in names


def test_depth_on_inaturalist_gives_13_supercategories(inat):
    sub = build_subset(inat, "depth", "supercategory")
    check_subset(inat, sub)
    assert sub.num_classes == 13 and sub.description["classes"] == sorted(INAT_13)
    assert len(sub.indices) == len(inat.labels("train"))
    sup = np.array(inat.supercategories)
    assert np.array_equal(np.array(sub.description["classes"])[sub.labels], sup[inat.labels("train")[sub.indices]])
    one_line_error("'supercategory'", inat, "depth", 5)


def test_depth_rejects_sources_without_a_hierarchy(domainnet, small_imagenet):
    msg = one_line_error("domainnet-like.*not ImageNet-like", domainnet, "depth", 5)
    assert "class 0" in msg
    one_line_error("integer >= 0", small_imagenet, "depth", "five")
    one_line_error("integer >= 0", small_imagenet, "depth", -1)


# -------------------------------------------------------------------------- semantics


def test_semantics_splits_imagenet_398_to_602(small_imagenet, wnids):
    animal = build_subset(small_imagenet, "semantics", "animal")
    obj = build_subset(small_imagenet, "semantics", "object")
    for sub in (animal, obj):
        check_subset(small_imagenet, sub)
    assert animal.num_classes == 398 and obj.num_classes == 602
    a, o = set(animal.description["classes"]), set(obj.description["classes"])
    assert not a & o and a | o == set(wnids)  # disjoint and covering
    assert all(is_under(w, "animal.n.01") for w in list(a)[::20])
    assert not any(is_under(w, "animal.n.01") for w in list(o)[::20])
    # Balanced by default: both sides have the smaller side's image count (the animals here).
    counts = np.bincount(small_imagenet.labels("train"), minlength=1000)
    animal_images = int(counts[animal.label_map >= 0].sum())
    assert len(animal.indices) == len(obj.indices) == animal_images < int(counts[obj.label_map >= 0].sum())
    # Class-balanced subsampling: each object class gets min(its images, t) or t + 1.
    got = np.bincount(obj.labels, minlength=602)
    have = counts[np.flatnonzero(obj.label_map >= 0)]
    t = got[got < have].min() if np.any(got < have) else got.max()
    assert np.all((got == have) | (got == t) | (got == t + 1)) and got.max() - got.min() <= have.max() - have.min()
    assert obj.description["source_images"] == {"animal": animal_images, "object": int(counts.sum()) - animal_images}
    # Labels are the original classes renumbered in source order.
    used = np.flatnonzero(animal.label_map >= 0)
    assert np.array_equal(animal.label_map[used], np.arange(398))
    unbalanced = build_subset(small_imagenet, "semantics", "object", balanced=False)
    assert len(unbalanced.indices) == int(counts[obj.label_map >= 0].sum())
    assert_seeded(small_imagenet, "semantics", "object")


def test_semantics_errors(small_imagenet, inat):
    one_line_error("'animal' or 'object'", small_imagenet, "semantics", "plant")
    one_line_error("inat-like.*not ImageNet-like.*supercategories", inat, "semantics", "animal")


# ---------------------------------------------------------------------------- classes


def test_classes_at_a_fixed_budget(small_imagenet):
    counts = np.bincount(small_imagenet.labels("train"), minlength=1000)
    for k, budget in ((100, 1000), (250, 2500), (1000, 10000), (300, 3001)):
        sub = build_subset(small_imagenet, "classes", k, budget=budget)
        check_subset(small_imagenet, sub)
        assert sub.num_classes == k and len(sub.indices) == budget
        per = np.bincount(sub.labels, minlength=k)
        assert per.min() == budget // k and per.max() - per.min() <= 1
        assert np.all(per <= counts[sub.label_map >= 0])
    # For one seed the classes of a smaller k are among those of a larger k.
    small = set(build_subset(small_imagenet, "classes", 100, budget=1000).description["classes"])
    assert small <= set(build_subset(small_imagenet, "classes", 250, budget=2500).description["classes"])
    assert_seeded(small_imagenet, "classes", 100, budget=1000)
    other = build_subset(small_imagenet, "classes", 100, budget=1000, seed=1).description["classes"]
    assert set(other) != small


def test_classes_budget_the_source_cannot_fill(small_imagenet):
    msg = one_line_error(r"classes: budget=20000 over 1000 classes needs 20.*at most 10000", small_imagenet,
                         "classes", 1000, budget=20000)
    assert "source 'imagenet-small'" in msg
    one_line_error("only 1000 classes", small_imagenet, "classes", 1001, budget=5000)
    one_line_error("budget=60000", small_imagenet, "classes", 100)
    one_line_error("integer >= 1", small_imagenet, "classes", 0, budget=10)
    one_line_error("must be an integer >= 100", small_imagenet, "classes", 100, budget=50)


# -------------------------------------------------------------------------- diversity


def test_breeds_table_resolves_against_wordnet(wnids):
    table = breeds_table()
    assert len(table) == 16 and all(len(subs) == 12 for _, subs in table)
    pairs = [(name, w) for _, subs in table for name, w in subs]
    assert len({w for _, w in pairs}) == 192 and {w for _, w in pairs} <= set(wnids)
    # Every name resolves to exactly one ILSVRC class by WordNet lemma, the one stored in the table.
    assert [resolve_imagenet_name(name) for name, _ in pairs] == [w for _, w in pairs]
    stored = dict(pairs)
    assert stored["kite"] == "n01608432"  # the bird, not the toy
    assert stored["mouse"] == "n03793489"  # computer mouse
    assert stored["monitor"] == "n03782006"
    assert stored["iron"] == "n03584829"  # smoothing iron
    assert stored["chest"] == "n03014705"
    assert table[0][0] == "garment" and table[-1][1][-1] == ("banana", "n07753592")
    with pytest.raises(ValueError, match="matches 2"):
        resolve_imagenet_name("crane")  # the bird and the machine are both ILSVRC classes
    with pytest.raises(ValueError, match="matches 0"):
        resolve_imagenet_name("unicorn")


def test_diversity_on_imagenet_size_source(full_imagenet):
    table = breeds_table()
    superclass_of = {w: s for s, (_, subs) in enumerate(table) for _, w in subs}
    idx = {w: i for i, w in enumerate(full_imagenet.classes)}
    chosen = {}
    for p, m in ((0.33, 4), (0.67, 8), (1.0, 12)):
        sub = build_subset(full_imagenet, "diversity", p, budget=80000)
        check_subset(full_imagenet, sub)
        assert sub.num_classes == 16 and len(sub.indices) == 80000 and not sub.description["with_replacement"]
        assert sub.description["classes"] == [s for s, _ in table]
        assert np.all(np.bincount(sub.labels) == 5000)  # budget split equally over superclasses
        subs = sub.description["subclasses"]
        assert all(len(v) == m for v in subs.values()) and sub.description["subclasses_per_class"] == m
        # Each row's label is its subclass's superclass; only chosen subclasses are used.
        used = np.flatnonzero(sub.label_map >= 0)
        assert len(used) == 16 * m
        assert all(sub.label_map[idx[w]] == superclass_of[w] for w in np.array(full_imagenet.classes)[used])
        per_subclass = np.bincount(full_imagenet.labels("train")[sub.indices], minlength=1000)[used]
        assert per_subclass.max() - per_subclass.min() <= 1 or m == 4  # balanced where no class is short
        chosen[m] = subs
    for s, _ in table:  # nested: 4 of the 8, 8 of the 12
        assert set(chosen[4][s]) <= set(chosen[8][s]) <= set(chosen[12][s])
    assert_seeded(full_imagenet, "diversity", 0.33)
    # With 4 subclasses, 1250 each; a short subclass (1200 images) gives all, its siblings give more.
    sub = build_subset(full_imagenet, "diversity", 0.33)
    other = [n for ns in sub.description["images_per_subclass"].values() for n in ns if n != 1250]
    assert other and set(other) <= {1200, 1266, 1267}


def test_diversity_short_subclasses_error_or_replacement(wnids):
    counts = np.full(1000, 300)
    src = LabelSource(name="imagenet-300", classes=list(wnids), rows={"train": shuffled_labels(counts)})
    one_line_error(r"diversity: value=0.33 .*at most 19200.*replace=True", src, "diversity", 0.33, budget=80000)
    sub = build_subset(src, "diversity", 0.33, budget=80000, replace=True)
    check_subset(src, sub)
    assert len(sub.indices) == 80000 and sub.description["with_replacement"]
    assert len(np.unique(sub.indices)) == 16 * 4 * 300  # every image of the chosen subclasses, then repeats
    assert np.all(np.bincount(sub.labels) == 5000)
    assert len(sub.description["resampled_subclasses"]) == 64


def test_diversity_needs_the_breeds_classes(small_imagenet):
    net = get_source("synthnet")
    msg = one_line_error(r"synthnet' has \d+ of the 192 BREEDS subclasses.*missing \d+", net, "diversity", 0.33)
    assert "1000 ILSVRC-2012" in msg
    one_line_error(r"in \(0, 1\]", small_imagenet, "diversity", 1.5)
    one_line_error("positive integer", small_imagenet, "diversity", 0.5, budget=0)


def test_diversity_on_inaturalist(inat):
    sup = np.array(inat.supercategories)
    chosen = {}
    for p in (0.33, 0.67, 1.0):
        sub = build_subset(inat, "diversity", p, budget=8000)
        check_subset(inat, sub)
        assert sub.num_classes == 7 and sub.description["classes"] == list(INAT_SUPERCATEGORIES)
        assert len(sub.indices) == 8000 and sub.description["with_replacement"]
        assert np.bincount(sub.labels).max() - np.bincount(sub.labels).min() <= 1
        used = np.flatnonzero(sub.label_map >= 0)
        assert np.array_equal(np.array(INAT_SUPERCATEGORIES)[sub.label_map[used]], sup[used])  # label = supercategory
        for s, n in sub.description["species_per_class"].items():
            assert n == max(1, round(np.sum(sup == s) * p))
        chosen[p] = set(used)
    assert chosen[0.33] <= chosen[0.67] <= chosen[1.0]
    assert len(np.unique(sub.indices)) < len(sub.indices)  # with replacement, as the paper samples
    assert_seeded(inat, "diversity", 0.33, budget=8000)
    missing = LabelSource(name="inat-no-fungi", classes=list(inat.classes), rows=inat.rows,
                          supercategories=["Plantae" if s == "Fungi" else s for s in inat.supercategories])
    one_line_error("no species in supercategories Fungi", missing, "diversity", 0.5)


# ------------------------------------------------------------------------ quantity, iNat


def test_quantity_on_inaturalist_top_species(inat):
    counts = np.bincount(inat.labels("train"), minlength=300)
    sub = build_subset(inat, "quantity", 500, num_classes=100)
    check_subset(inat, sub)
    assert sub.num_classes == 100 and np.all(np.bincount(sub.labels) == 5)
    used = np.flatnonzero(sub.label_map >= 0)
    assert counts[used].min() >= np.sort(counts)[-100]  # the most frequent species


# --------------------------------------------------------------------------- domains


def test_domain_selections_are_disjoint_and_cover(domainnet):
    doms = sorted(set(domainnet.domains("train")))
    for split in ("train", "test"):
        parts = [domain_rows(domainnet, split, d) for d in doms]
        together = np.concatenate(parts)
        assert len(together) == len(np.unique(together)) == len(domainnet.labels(split))
    sketch = build_subset(domainnet, "domain", "sketch")
    check_subset(domainnet, sketch)
    assert np.array_equal(sketch.indices, domain_rows(domainnet, "train", "sketch"))
    assert np.all(domainnet.domains("train")[sketch.indices] == "sketch")
    assert np.array_equal(sketch.labels, domainnet.labels("train")[sketch.indices])  # labels unchanged
    assert sketch.num_classes == 20 and sketch.description["domain"] == "sketch"
    # Quantity within one domain: class-balanced over that domain's rows only.
    sub = build_subset(domainnet, "quantity", 100, domain="real")
    check_subset(domainnet, sub)
    assert np.all(domainnet.domains("train")[sub.indices] == "real") and np.all(np.bincount(sub.labels) == 5)
    assert_seeded(domainnet, "quantity", 100, domain="real")


def test_domain_errors(domainnet, small_imagenet):
    one_line_error("'paintings' is not a domain.*sketch", domainnet, "domain", "paintings")
    one_line_error("'imagenet-small' has no domains", small_imagenet, "domain", "sketch")
    one_line_error(r"in domain 'real'.*at most", domainnet, "quantity", 2000, domain="real")
    with pytest.raises(InterventionError, match="is not a domain"):
        domain_rows(domainnet, "test", "photo")


# ---------------------------------------------------------------------- all of them


def test_unknown_parameters_and_interventions_are_one_line_errors(small_imagenet):
    one_line_error("semantics: .*unexpected keyword argument 'budget'", small_imagenet, "semantics", "animal",
                   budget=5)
    one_line_error("unknown intervention 'breadth'.*diversity", small_imagenet, "breadth", 3)


def test_embedded_synthnet_runs_every_wordnet_intervention():
    net = get_source("synthnet")
    for name, value, params in (("depth", 4, {}), ("semantics", "animal", {}), ("semantics", "object", {}),
                                ("classes", 10, {"budget": 500}), ("quantity", 500, {})):
        sub = build_subset(net, name, value, **params)
        check_subset(net, sub)
        assert sub.description["source"] == "synthnet" and sub.description["params"] == params
    a, o = build_subset(net, "semantics", "animal"), build_subset(net, "semantics", "object")
    assert len(a.indices) == len(o.indices) and a.num_classes + o.num_classes == net.num_classes


def test_imagenet_size_subsets_take_well_under_a_second(full_imagenet):
    build_subset(full_imagenet, "depth", 5)  # WordNet work cached per process (and the walk itself)
    build_subset(full_imagenet, "semantics", "animal")
    cases = [("quantity", 150000, {}), ("classes", 250, {"budget": 150000}), ("semantics", "object", {}),
             ("diversity", 1.0, {}), ("depth", 5, {}), ("full", None, {})]
    for name, value, params in cases:
        start = time.perf_counter()
        sub = build_subset(full_imagenet, name, value, **params)
        took = time.perf_counter() - start
        assert took < 1.0, f"{name}: {took:.2f} s on 1.28 M rows"
        check_subset(full_imagenet, sub)


_HASH_SCRIPT = """
import hashlib, sys
import numpy as np
sys.path.insert(0, "tests")
from test_interventions import LabelSource, shuffled_labels
from datasets.hierarchy import imagenet_wnids
from datasets.interventions import build_subset
src = LabelSource(name="imagenet-small", classes=imagenet_wnids(),
                  rows={"train": shuffled_labels(10 + np.arange(1000) * 7 % 6)})
for name, value, params in CASES:
    sub = build_subset(src, name, value, seed=3, **params)
    print(hashlib.sha256(sub.indices.tobytes() + sub.labels.tobytes()).hexdigest())
"""
_HASH_CASES = [("depth", 7, {}), ("depth", 4, {}), ("semantics", "object", {}), ("classes", 100, {"budget": 1000}),
               ("diversity", 0.67, {"budget": 1280})]


def test_subsets_do_not_depend_on_the_hash_seed(small_imagenet):
    import hashlib
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    script = _HASH_SCRIPT.replace("CASES", repr(_HASH_CASES))
    env = {**os.environ, "PYTHONHASHSEED": "321",
           "PYTHONPATH": os.pathsep.join(p for p in (str(root), os.environ.get("PYTHONPATH", "")) if p)}
    r = subprocess.run([sys.executable, "-c", script], cwd=root, env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    here = [hashlib.sha256(s.indices.tobytes() + s.labels.tobytes()).hexdigest()
            for s in (build_subset(small_imagenet, n, v, seed=3, **p) for n, v, p in _HASH_CASES)]
    assert r.stdout.split() == here
