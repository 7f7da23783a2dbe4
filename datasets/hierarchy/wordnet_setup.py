"""Offline WordNet 3.0: where its files come from, installing them, and the nltk reader.

``wordnet()`` gives an offline nltk WordNet 3.0 reader: nltk's own data if it has one,
else the system WordNet (Debian's ``wordnet-base`` + ``wordnet-sense-index``), copied
once into a cache laid out as an nltk data directory. ``install_wordnet`` writes such a
directory for ``make install`` without importing nltk (which takes seconds). The label
hierarchy built on this reader lives in ``datasets.hierarchy``, which also carries the
command line (``python -m datasets.hierarchy install-wordnet|check``).
"""

from __future__ import annotations

import functools
import importlib.resources
import os
import re
import shutil
import sys
import weakref
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # nltk is imported lazily: `import datasets` must stay cheap.
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

__all__ = [
    "FIX_HINT",
    "cache_nltk_data_dir",
    "install_wordnet",
    "package_data",
    "system_wordnet_dir",
    "system_wordnet_problem",
    "wordnet",
    "wordnet_origin",
]

SYSTEM_WORDNET_DIR = "/usr/share/wordnet"  # Debian/Ubuntu wordnet-base; env WORDNET_DIR overrides
DEFAULT_CACHE_DIR = "~/.cache/robustness_sweeps"  # env SWEEPS_CACHE overrides

# What nltk 3.10's WordNetCorpusReader opens (a copy of its private `_FILES`, so that
# installing does not have to import nltk; a test keeps the two equal). At construction it reads lexnames, data.adj (satellite scan), index.*, *.exc
# and index.sense (map_wn() builds a 3.0 -> 3.0 sense map); data.* are read per lookup and
# cntlist.rev for lemma counts. Debian ships all of these except lexnames.
_NLTK_WORDNET_FILES = (
    "cntlist.rev", "lexnames", "index.sense",
    "index.adj", "index.adv", "index.noun", "index.verb",
    "data.adj", "data.adv", "data.noun", "data.verb",
    "adj.exc", "adv.exc", "noun.exc", "verb.exc",
)

FIX_HINT = (
    "run `python -m nltk.downloader wordnet` or "
    "`sudo apt-get install wordnet-base wordnet-sense-index` (or `make install`)"
)

_ORIGIN = "not loaded"  # where wordnet() found its data, for `check`


# ----------------------------------------------------------------------------- paths


def system_wordnet_dir() -> Path:
    """Directory of the system WordNet 3.0 database files (env ``WORDNET_DIR``)."""
    return Path(os.environ.get("WORDNET_DIR") or SYSTEM_WORDNET_DIR).expanduser()


def cache_nltk_data_dir() -> Path:
    """The nltk data directory this module fills from the system WordNet.

    ``$SWEEPS_CACHE/nltk_data`` (default ``~/.cache/robustness_sweeps/nltk_data``).
    """
    return Path(os.environ.get("SWEEPS_CACHE") or DEFAULT_CACHE_DIR).expanduser() / "nltk_data"


def package_data(name: str):
    """A file of this package's ``data/`` folder (works from a wheel or a checkout)."""
    return importlib.resources.files("datasets").joinpath("data", name)


def _wordnet_files() -> tuple[str, ...]:
    """File names nltk's WordNetCorpusReader needs, lexnames included.

    The static list (checked against nltk's ``_FILES`` by the tests) keeps
    ``install-wordnet`` from importing nltk, which takes seconds.
    """
    reader = sys.modules.get("nltk.corpus.reader.wordnet")
    files = tuple(getattr(getattr(reader, "WordNetCorpusReader", None), "_FILES", _NLTK_WORDNET_FILES))
    return files if "lexnames" in files else files + ("lexnames",)


def _missing_files(directory: Path, names: Iterable[str]) -> list[str]:
    return [n for n in names if not (directory / n).is_file()]


# ------------------------------------------------------------------- installing WordNet


def _read_version(data_adj: Path) -> str | None:
    """WordNet version from the licence header of ``data.adj`` (what nltk's get_version reads)."""
    with open(data_adj, encoding="utf-8", errors="replace") as fh:
        head = fh.read(4096)
    m = re.search(r"Word[nN]et (\d+\+?|\d+\.\d+) Copyright", head)
    return m.group(1) if m else None


def _copy_atomic(src: Path, dst: Path) -> None:
    """Copy ``src`` to ``dst`` via a temporary name, so readers never see half a file.

    A copy, not a symlink: nltk 3.10 (pathsec) resolves symlinks and refuses files that
    resolve outside the corpus root, so links to /usr/share/wordnet would not load.
    """
    from datasets.storage.atomic import atomic_write

    atomic_write(dst, lambda tmp: shutil.copy2(src, tmp))


def system_wordnet_problem(source: str | os.PathLike[str] | None = None) -> str | None:
    """Why the system WordNet can't be used (a phrase naming the directory), or None."""
    src = Path(source).expanduser() if source is not None else system_wordnet_dir()
    needed = [n for n in _wordnet_files() if n != "lexnames"]
    missing = _missing_files(src, needed)
    if len(missing) == len(needed):
        return f"no system WordNet in {src}"
    if missing:
        return f"the system WordNet in {src} is incomplete (missing {', '.join(missing)})"
    version = _read_version(src / "data.adj")
    if version != "3.0":
        return f"{src} holds WordNet {version or '(unknown version)'}, not 3.0"
    return None


def install_wordnet(nltk_data: str | os.PathLike[str], source: str | os.PathLike[str] | None = None) -> list[str]:
    """Make ``nltk_data/corpora/wordnet`` a WordNet 3.0 corpus nltk can read.

    Copies the system WordNet files (``source``, default :func:`system_wordnet_dir`) and
    this package's ``lexnames`` (which Debian lacks). Idempotent and safe to run
    concurrently: files already identical are skipped, others are replaced atomically.
    Returns the names written (empty when everything was up to date).
    Raises RuntimeError (one line) when the system WordNet is missing, incomplete or not 3.0.
    """
    src = Path(source).expanduser() if source is not None else system_wordnet_dir()
    problem = system_wordnet_problem(src)
    if problem:
        raise RuntimeError(f"{problem}: set WORDNET_DIR to a WordNet 3.0 dict directory, or {FIX_HINT}")
    needed = [n for n in _wordnet_files() if n != "lexnames"]

    dest = Path(nltk_data).expanduser() / "corpora" / "wordnet"
    dest.mkdir(parents=True, exist_ok=True)
    written: list[str] = []
    for name in needed:
        s, d = src / name, dest / name
        ss = s.stat()
        if d.is_file() and not d.is_symlink():
            ds = d.stat()
            # copy2 keeps mtimes, so equal size and mtime means "our earlier copy".
            if ds.st_size == ss.st_size and int(ds.st_mtime) == int(ss.st_mtime):
                continue
        # A symlink (hand-made or from an older install) is replaced too: nltk refuses it.
        _copy_atomic(s, d)
        written.append(name)

    lexnames = package_data("lexnames").read_bytes()
    d = dest / "lexnames"
    if d.is_symlink() or not d.is_file() or d.read_bytes() != lexnames:
        from datasets.storage.atomic import atomic_write

        atomic_write(d, lexnames)
        written.append("lexnames")
    return written


# ------------------------------------------------------------------------ the reader


@functools.cache
def _reader_class() -> type[WordNetCorpusReader]:
    """nltk's WordNetCorpusReader without the 3.0 -> 3.0 identity sense map.

    nltk 3.10 calls ``map_wn()`` in the constructor, which compares ``get_version()``
    ("3.0") with the corpus *name* "wordnet", never matches, and so reads index.sense twice
    to build an identity map used only by the multilingual (OMW) functions: about 60% of
    the load time, paid by every Ray trial process. ``None`` is what nltk itself uses for
    "no mapping needed", so results, OMW included, are unchanged.
    """
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    class WordNet30Reader(WordNetCorpusReader):
        def map_wn(self, version: str = "wordnet"):
            if version == "wordnet" and self.get_version() == "3.0":
                return None
            return super().map_wn(version)

    return WordNet30Reader


def _load_wordnet() -> WordNetCorpusReader:
    """Uncached :func:`wordnet` (tests call this to probe the search order)."""
    import nltk
    from nltk.corpus.reader import CorpusReader
    from nltk.corpus.util import LazyCorpusLoader

    try:
        root = nltk.data.find("corpora/wordnet")
        origin = f"nltk data {root}"
    except LookupError:
        origin = _provide_system_wordnet()
        root = nltk.data.find("corpora/wordnet")
    # Same construction as nltk.corpus.wordnet, OMW (multilingual) data loaded lazily.
    omw = LazyCorpusLoader("omw-2.0", CorpusReader, r".*/wn-data-.*\.tab", encoding="utf8")
    try:
        wn = _reader_class()(root, omw)
    except (OSError, LookupError, ValueError, AssertionError) as e:
        raise RuntimeError(f"WordNet at {root} could not be read ({_first_line(e)}): {FIX_HINT}") from None
    version = wn.get_version()
    if version != "3.0":
        raise RuntimeError(
            f"nltk's corpora/wordnet at {root} is WordNet {version}, the label hierarchies need 3.0: "
            f"remove it and {FIX_HINT}"
        )
    global _ORIGIN
    _ORIGIN = origin
    os.register_at_fork(after_in_child=functools.partial(_forget_open_files, weakref.ref(wn)))
    return wn


def _forget_open_files(reader_ref: weakref.ref) -> None:
    """In a forked child: drop the WordNet files the reader holds open, so that it opens its own.

    nltk's reader keeps its data files open and seeks in them for each lookup. A forked child
    shares each open file with its parent and siblings, offset included, so their seeks move under
    it and a lookup reads another synset's line ("wnid ... is not a WordNet 3.0 noun synset offset"
    in FFCV's writer processes). These are the reader's only long-lived handles in nltk 3.10.
    """
    reader = reader_ref()
    if reader is not None:
        reader._data_file_map = {}
        reader._key_count_file = reader._key_synset_file = None


def _provide_system_wordnet() -> str:
    """Put the system WordNet into the cache's nltk data dir and register that dir.

    Registering it on ``nltk.data.path`` is required: nltk 3.10's pathsec lets corpus
    readers open only files under nltk's data roots (and stock ``nltk.corpus.wordnet``,
    whose map_wn() looks "corpora/wordnet" up by name, then works in this process too).
    Returns where the data came from; raises the one-line RuntimeError when nothing fits.
    """
    import nltk

    base = cache_nltk_data_dir()
    cached = base / "corpora" / "wordnet"
    problem = system_wordnet_problem()
    if problem is None:
        try:
            install_wordnet(base)
        except OSError as e:
            raise RuntimeError(
                f"cannot write the WordNet cache {cached} ({e.strerror or e}): set SWEEPS_CACHE to a "
                f"writable directory, or {FIX_HINT}"
            ) from None
        origin = f"system WordNet {system_wordnet_dir()} (copied to {cached})"
    elif not _missing_files(cached, _wordnet_files()):
        origin = f"cached copy {cached}"  # the system copy went away; an earlier copy still serves
    else:
        raise RuntimeError(
            f"WordNet 3.0 not found: nltk has no corpora/wordnet on its data path and {problem}; "
            f"fix: {FIX_HINT}"
        )
    if str(base) not in nltk.data.path:
        nltk.data.path.append(str(base))
    return origin


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


@functools.cache
def wordnet() -> WordNetCorpusReader:
    """The nltk WordNet 3.0 reader, offline, loaded once per process.

    Search order: nltk's data path (``corpora/wordnet``, e.g. ``<venv>/nltk_data`` written
    by ``make install``), then the system WordNet in ``/usr/share/wordnet`` (env
    ``WORDNET_DIR``) copied into ``~/.cache/robustness_sweeps/nltk_data`` (env
    ``SWEEPS_CACHE``). Raises a one-line RuntimeError naming both fixes when neither exists.
    """
    return _load_wordnet()


def wordnet_origin() -> str:
    """Where :func:`wordnet` found its data ("not loaded" before the first call), for `check`."""
    return _ORIGIN
