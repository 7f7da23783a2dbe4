"""WordNet label hierarchies for ImageNet-like sources (wnids such as ``n01440764``).

``imagenet_superclasses`` contracts labels along WordNet as in docs/PROTOCOL.md 4.2
(5/17/37/85/232 classes at depth 2/4/5/6/7 for ImageNet-1k). Every walk up the hierarchy
breaks ties by the smallest synset name, because nltk 3.10 builds hypernym lists from sets,
so their order (and "the first hypernym") changes with PYTHONHASHSEED. The offline reader
itself (``wordnet()``, installing WordNet) lives in ``datasets.hierarchy.wordnet_setup`` and is
re-exported here.

Command line::

    python -m datasets.hierarchy install-wordnet --nltk-data DIR   # DIR/corpora/wordnet
    python -m datasets.hierarchy check                              # where WordNet comes from, counts
"""

from __future__ import annotations

import functools
import os
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from datasets.hierarchy.wordnet_setup import (  # re-exported: `from datasets.hierarchy import wordnet` is public API
    SYSTEM_WORDNET_DIR,
    _first_line,
    install_wordnet,
    package_data,
    system_wordnet_dir,
    system_wordnet_problem,
    wordnet,
    wordnet_origin,
)

if TYPE_CHECKING:  # nltk is imported lazily: `import datasets` must stay cheap.
    from nltk.corpus.reader.wordnet import Synset

__all__ = [
    "hypernym_path",
    "imagenet_superclasses",
    "imagenet_wnids",
    "install_wordnet",
    "is_under",
    "is_wnid",
    "synset_of",
    "system_wordnet_problem",
    "wnid_of",
    "wordnet",
]

_WNID_RE = re.compile(r"^n\d{8}$")


def is_wnid(name: object) -> bool:
    """Whether ``name`` looks like an ImageNet wnid (``n`` and 8 digits); no WordNet lookup."""
    return isinstance(name, str) and bool(_WNID_RE.match(name))


def synset_of(wnid: str) -> Synset:
    """The WordNet 3.0 noun synset of an ImageNet wnid such as ``n01440764``."""
    if not isinstance(wnid, str) or not _WNID_RE.match(wnid):
        raise ValueError(f"not an ImageNet wnid: {wnid!r} (expected 'n' and 8 digits, e.g. n01440764)")
    import warnings

    with warnings.catch_warnings():  # nltk warns and returns None for a bad offset
        warnings.simplefilter("ignore")
        try:
            s = wordnet().synset_from_pos_and_offset("n", int(wnid[1:]))
        except Exception:  # nltk.corpus.reader.wordnet.WordNetError and parse errors
            s = None
    if s is None:
        raise ValueError(f"wnid {wnid} is not a WordNet 3.0 noun synset offset")
    return s


def wnid_of(synset: Synset) -> str:
    """The wnid (pos letter + 8-digit offset) of a synset, e.g. ``n01440764``."""
    return f"{synset.pos()}{synset.offset():08d}"


def _parent(s: Synset) -> Synset | None:
    """The hypernym a deterministic walk takes: smallest ``.name()``.

    Instance hypernyms count only when a synset has no plain hypernym (instances such as
    named places hang off their class that way). Names are unique in nltk, so this is a
    total order, independent of PYTHONHASHSEED.
    """
    parents = s.hypernyms() or s.instance_hypernyms()
    return min(parents, key=lambda h: h.name()) if parents else None


def hypernym_path(wnid: str) -> list[str]:
    """Wnids from the root (``entity.n.01`` = n00001740) down to ``wnid``, one per level.

    Built by walking up from ``wnid`` through :func:`_parent`, so it is the path the
    superclass contraction follows, not necessarily the shortest one.
    """
    path = []
    s: Synset | None = synset_of(wnid)
    while s is not None:
        path.append(wnid_of(s))
        s = _parent(s)
    return path[::-1]


@functools.lru_cache(maxsize=65536)
def _ancestor_wnids(wnid: str) -> frozenset[str]:
    """``wnid`` and every wnid above it via hypernyms and instance hypernyms (cached:
    sources ask this for every class and several ancestors)."""
    start = synset_of(wnid)
    seen = {start}
    stack = [start]
    while stack:
        x = stack.pop()
        for h in x.hypernyms() + x.instance_hypernyms():
            if h not in seen:
                seen.add(h)
                stack.append(h)
    return frozenset(wnid_of(x) for x in seen)


def is_under(wnid: str, ancestor: str) -> bool:
    """Whether ``wnid`` is ``ancestor`` or lies below it on any hypernym path.

    ``ancestor`` is a synset name (``animal.n.01``) or a wnid (``n00015388``).
    """
    if _WNID_RE.match(ancestor):
        anc = synset_of(ancestor)
    else:
        try:
            anc = wordnet().synset(ancestor)
        except Exception as e:  # WordNetError, or a malformed name
            raise ValueError(f"unknown WordNet synset name {ancestor!r} ({_first_line(e)})") from None
    return wnid_of(anc) in _ancestor_wnids(wnid)


def imagenet_superclasses(wnids: Iterable[str], depth: int) -> dict[str, str]:
    """Map each leaf wnid to its superclass wnid at WordNet depth at most ``depth``.

    The rule of docs/PROTOCOL.md 4.2 (Huh et al. 2016's contraction): walk each label
    up while its synset's ``min_depth()`` (shortest path to the root) exceeds ``depth``,
    each step taking the hypernym with the smallest synset name. Labels already at depth
    <= ``depth`` map to themselves. On the 1000 ILSVRC-2012 classes this gives 5, 17, 37,
    85 and 232 superclasses at depths 2, 4, 5, 6 and 7.
    """
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 0:
        raise ValueError(f"depth must be a non-negative integer, got {depth!r}")
    out: dict[str, str] = {}
    for wnid in wnids:
        s = synset_of(wnid)
        # min_depth() > depth >= 0 implies a parent exists, and a parent's min_depth is at
        # least the child's minus one, so a walked label stops exactly at depth `depth`.
        while s.min_depth() > depth:
            s = _parent(s)
        out[wnid] = wnid_of(s)
    return out


def imagenet_wnids() -> list[str]:
    """The 1000 ILSVRC-2012 class wnids, sorted (package data ``data/imagenet_wnids.txt``)."""
    text = package_data("imagenet_wnids.txt").read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]


# ------------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    """``python -m datasets.hierarchy {install-wordnet,check}``."""
    from analysis.cli_parser import OneLineParser

    parser = OneLineParser(prog="python -m datasets.hierarchy",
                           description="WordNet 3.0 for the label hierarchies: install it for nltk (offline), "
                                       "or check it.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{install-wordnet,check}")
    inst = sub.add_parser("install-wordnet", help="copy the system WordNet 3.0 into an nltk data dir")
    inst.add_argument("--nltk-data", required=True, type=Path, metavar="DIR",
                      help="nltk data dir to fill (DIR/corpora/wordnet), e.g. .venv/nltk_data")
    inst.add_argument("--wordnet-dir", type=Path, default=None, metavar="DIR",
                      help=f"system WordNet dict dir (default: $WORDNET_DIR or {SYSTEM_WORDNET_DIR})")
    sub.add_parser("check", help="load WordNet, say where from, print the superclass counts")
    args = parser.parse_args(argv)

    try:
        if args.command == "install-wordnet":
            dest = args.nltk_data.expanduser() / "corpora" / "wordnet"
            src = args.wordnet_dir or system_wordnet_dir()
            written = install_wordnet(args.nltk_data, args.wordnet_dir)
            # Touch lexnames: the Makefile uses it as the target's timestamp.
            os.utime(dest / "lexnames")
            if written:
                print(f"installed WordNet 3.0 into {dest}: wrote {', '.join(written)} (from {src}; "
                      "lexnames from the package)")
            else:
                print(f"WordNet 3.0 in {dest} is already up to date (source {src})")
        else:
            wn = wordnet()
            print(f"WordNet {wn.get_version()} from {wordnet_origin()}")
            wnids = imagenet_wnids()
            for d in (2, 4, 5, 6, 7):
                n = len(set(imagenet_superclasses(wnids, d).values()))
                print(f"depth {d}: {n} superclasses")
    except (RuntimeError, OSError, ValueError) as e:
        print(f"error: {_first_line(e)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
