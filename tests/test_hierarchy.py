"""WordNet access (datasets/hierarchy/wordnet_setup.py) and the ImageNet label contraction (datasets/hierarchy/)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from datasets import hierarchy
from datasets.hierarchy import wordnet_setup
from datasets.hierarchy import (
    hypernym_path,
    imagenet_superclasses,
    imagenet_wnids,
    is_under,
    synset_of,
    wnid_of,
    wordnet,
)

REPO = Path(__file__).resolve().parents[1]
DEPTHS = (2, 4, 5, 6, 7)
# docs/PROTOCOL.md 4.2: classes after contracting ImageNet-1k to max depth d.
EXPECTED_COUNTS = {2: 5, 4: 17, 5: 37, 6: 85, 7: 232}

# Prints the superclass maps for all depths as JSON (run under several hash seeds).
_MAPPINGS_SCRIPT = """
import json
from datasets.hierarchy import imagenet_superclasses, imagenet_wnids
w = imagenet_wnids()
print(json.dumps({d: imagenet_superclasses(w, d) for d in (2, 4, 5, 6, 7)}, sort_keys=True))
"""


def _env(**extra: str) -> dict[str, str]:
    """Environment for a child Python that imports this checkout's packages."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def mappings() -> dict[int, dict[str, str]]:
    wnids = imagenet_wnids()
    return {d: imagenet_superclasses(wnids, d) for d in DEPTHS}


def test_wordnet_loads_offline() -> None:
    wn = wordnet()
    assert wn.get_version() == "3.0"
    assert wordnet() is wn  # cached
    dog = wn.synset("dog.n.01")
    assert dog.min_depth() == 8
    assert {h.name() for h in dog.hypernyms()} == {"canine.n.02", "domestic_animal.n.01"}
    assert dog.lexname() == "noun.animal"  # needs the lexnames file Debian lacks
    # Instances hang off their class via instance hypernyms.
    assert [h.name() for h in wn.synset("paris.n.01").instance_hypernyms()] == ["national_capital.n.01"]
    assert wn.synset("paris.n.01").hypernyms() == []
    assert wn.lemma("dog.n.01.dog").count() > 0  # cntlist.rev
    assert wn.synset_from_sense_key("dog%1:05:00::") == dog  # index.sense
    assert wn.morphy("geese", "n") == "goose"  # noun.exc


def test_static_file_list_matches_nltk() -> None:
    # install-wordnet avoids importing nltk by using a copy of the reader's file list.
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    assert set(wordnet_setup._NLTK_WORDNET_FILES) == set(WordNetCorpusReader._FILES)


def test_wnid_roundtrip_and_errors() -> None:
    tench = synset_of("n01440764")
    assert tench.name() == "tench.n.01"
    assert wnid_of(tench) == "n01440764"
    for bad in ("n0144076", "01440764", "x", "n99999999"):
        with pytest.raises(ValueError):
            synset_of(bad)


def _wrong_lookups_in_a_child(seed: int, expected: dict[str, str]) -> list[str]:
    """Each of the 1000 wnids looked up 3 times in a shuffled order; the wnids whose lookup went wrong."""
    import random

    order = list(expected) * 3
    random.Random(seed).shuffle(order)
    wordnet()._synset_offset_cache.clear()  # each lookup reads the data file, not nltk's cache
    wrong = []
    for wnid in order:
        try:
            if synset_of(wnid).name() != expected[wnid]:
                wrong.append(wnid)
        except ValueError:
            wrong.append(wnid)
    return wrong


def test_forked_children_read_wordnet_through_their_own_files() -> None:
    # nltk keeps data.noun open and seeks in it per lookup; forked children that shared their parent's
    # open file (offset included) read each other's lines (FFCV's writer processes hit this).
    from functools import partial

    from datasets.processes import fork_pool

    expected = {w: synset_of(w).name() for w in imagenet_wnids()}  # the parent's reader has its files open
    with fork_pool(2) as pool:
        children = pool.map(partial(_wrong_lookups_in_a_child, expected=expected), [1, 2])
    for wrong in children:
        assert not wrong, f"{len(wrong)} of 3000 lookups went wrong in a child, e.g. {wrong[:3]}"


def test_imagenet_wnids_package_data() -> None:
    wnids = imagenet_wnids()
    assert len(wnids) == 1000 == len(set(wnids))
    assert wnids == sorted(wnids) and wnids[0] == "n01440764"
    assert all(hierarchy.is_wnid(w) for w in wnids)
    assert not any(hierarchy.is_wnid(x) for x in ("n0144076", "Aves", None, "sketch"))


def test_hierarchy_reexports_the_reader() -> None:
    # DESIGN.md's public API imports the reader from datasets.hierarchy.
    assert hierarchy.wordnet is wordnet_setup.wordnet
    assert hierarchy.install_wordnet is wordnet_setup.install_wordnet


def test_hypernym_path_and_is_under() -> None:
    path = hypernym_path("n01440764")
    assert path[0] == wnid_of(wordnet().synset("entity.n.01")) == "n00001740"
    assert path[-1] == "n01440764"
    assert wnid_of(wordnet().synset("animal.n.01")) in path
    # Each step goes to the smallest-named parent.
    for child, parent in zip(path[::-1], path[-2::-1]):
        hs = synset_of(child).hypernyms() or synset_of(child).instance_hypernyms()
        assert wnid_of(min(hs, key=lambda h: h.name())) == parent
    assert is_under("n01440764", "animal.n.01")
    assert is_under("n01440764", "n00015388")  # animal.n.01 by wnid
    assert is_under("n01440764", "n01440764")
    assert not is_under("n02690373", "animal.n.01")  # airliner
    with pytest.raises(ValueError):
        is_under("n01440764", "no_such_thing.n.01")
    # docs/PROTOCOL.md 4.3: 398 of the 1000 classes are animals.
    assert sum(is_under(w, "animal.n.01") for w in imagenet_wnids()) == 398


def test_superclass_counts(mappings: dict[int, dict[str, str]]) -> None:
    counts = {d: len(set(m.values())) for d, m in mappings.items()}
    assert counts == EXPECTED_COUNTS
    for d, m in mappings.items():
        assert set(m) == set(imagenet_wnids())
        for leaf, sup in m.items():
            # Walked labels land exactly at depth d; shallower ones stay themselves.
            assert synset_of(sup).min_depth() == min(d, synset_of(leaf).min_depth())
            assert sup == leaf or synset_of(leaf).min_depth() > d
        # Every superclass is an ancestor of its leaf.
        assert all(is_under(leaf, sup) for leaf, sup in list(m.items())[::50])


def test_superclasses_reject_bad_depth() -> None:
    for bad in (-1, 2.5, True):
        with pytest.raises(ValueError):
            imagenet_superclasses(["n01440764"], bad)  # type: ignore[arg-type]
    # A label already shallower than `depth` maps to itself.
    assert imagenet_superclasses(["n00015388"], 7) == {"n00015388": "n00015388"}


def test_superclasses_independent_of_hash_seed(mappings: dict[int, dict[str, str]]) -> None:
    # nltk builds hypernym lists from sets: only the name tie-break keeps this stable.
    procs = {
        seed: subprocess.Popen(
            [sys.executable, "-c", _MAPPINGS_SCRIPT], cwd=REPO, env=_env(PYTHONHASHSEED=seed),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for seed in ("0", "1", "123")
    }
    expected = json.loads(json.dumps(mappings, sort_keys=True))
    for seed, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, f"PYTHONHASHSEED={seed}: {err[-2000:]}"
        assert json.loads(out) == expected, f"PYTHONHASHSEED={seed} changed the mapping"


def test_lexnames_file_matches_wordnet() -> None:
    lines = (REPO / "datasets" / "data" / "lexnames").read_text().splitlines()
    assert len(lines) == 45
    category = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}
    for i, line in enumerate(lines):
        num, name, cat = line.split("\t")
        assert num == f"{i:02d}" and int(cat) == category[name.split(".")[0]]
    assert lines[0] == "00\tadj.all\t3" and lines[3] == "03\tnoun.Tops\t1" and lines[44] == "44\tadj.ppl\t3"
    root = Path(str(wordnet().root))
    if not (root / "data.noun").is_file():
        pytest.skip(f"WordNet at {root} is not a plain directory")
    # Every synset's lex_filenum names a lexicographer file of its own part of speech.
    prefix = {"n": "noun.", "v": "verb.", "a": "adj.", "s": "adj.", "r": "adv."}
    names = [line.split("\t")[1] for line in lines]
    for pos in ("noun", "verb", "adj", "adv"):
        with open(root / f"data.{pos}", encoding="utf-8") as fh:
            seen = {(int(f[1]), f[2]) for f in (line.split(" ", 3) for line in fh if not line.startswith(" "))}
        assert all(names[num].startswith(prefix[p]) for num, p in seen), pos


def test_missing_wordnet_gives_one_line_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import nltk

    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setattr(nltk.data, "path", [str(empty)])
    monkeypatch.setenv("NLTK_DATA", str(empty))
    monkeypatch.setenv("WORDNET_DIR", str(empty))
    monkeypatch.setenv("SWEEPS_CACHE", str(tmp_path / "cache"))
    with pytest.raises(RuntimeError) as info:
        wordnet_setup._load_wordnet()  # uncached: wordnet() keeps its reader for the other tests
    msg = str(info.value)
    assert "\n" not in msg
    assert "python -m nltk.downloader wordnet" in msg
    assert "apt-get install wordnet-base wordnet-sense-index" in msg
    assert str(empty) in msg


def test_install_wordnet_cli_error_is_one_line(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "datasets.hierarchy", "install-wordnet", "--nltk-data", str(tmp_path / "nd")],
        cwd=REPO, env=_env(WORDNET_DIR=str(tmp_path)), capture_output=True, text=True, timeout=120,
    )
    assert r.returncode == 1
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "nltk.downloader wordnet" in r.stderr and "apt-get install wordnet-base wordnet-sense-index" in r.stderr
    assert not (tmp_path / "nd").exists()


def test_install_wordnet_makes_plain_nltk_work(tmp_path: Path) -> None:
    problem = hierarchy.system_wordnet_problem()
    if problem:
        pytest.skip(problem)
    nd = tmp_path / "nd"
    cmd = [sys.executable, "-m", "datasets.hierarchy", "install-wordnet", "--nltk-data", str(nd)]
    first = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    assert "installed WordNet 3.0" in first.stdout and "lexnames" in first.stdout
    files = sorted(p.name for p in (nd / "corpora" / "wordnet").iterdir())
    assert "lexnames" in files and "data.noun" in files and "index.sense" in files
    assert not any((nd / "corpora" / "wordnet" / f).is_symlink() for f in files)
    again = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "already up to date" in again.stdout, again.stdout + again.stderr

    # A fresh interpreter with only that dir on nltk's path reads WordNet with stock nltk.
    probe = (
        "import nltk\nfrom nltk.corpus import wordnet as wn\n"
        "print(nltk.data.find('corpora/wordnet'))\n"
        "print(wn.synset_from_pos_and_offset('n', 1440764).name(), wn.synset('dog.n.01').lexname())\n"
    )
    env = _env(NLTK_DATA=str(nd), HOME=str(tmp_path))  # HOME: keep ~/nltk_data out of the search
    r = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    found, names = r.stdout.strip().splitlines()
    assert Path(found).resolve() == (nd / "corpora" / "wordnet").resolve()
    assert names == "tench.n.01 noun.animal"
