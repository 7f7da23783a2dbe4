"""Versioned `.npz` caches of computed data (directory scans, FractalDB systems): no pickles.

`cached(path, version, build)` returns what `build()` returned, stored at `path` as one `.npz`:
numeric arrays as arrays, everything around them (dicts, lists, tuples, strings, numbers, None and
the dataclasses named in `types`) as a JSON tree, plus the cache format and the caller's `version`.
It is read with `allow_pickle=False`, so a cache file can never run code. A file of another
version, or one that cannot be read (cut short, corrupt, not an `.npz`), is rebuilt, with one line
on stderr saying why; `build()`'s own errors propagate.
"""
from __future__ import annotations

import dataclasses
import io
import json
import sys
import zipfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from datasets.storage.atomic import atomic_write

__all__ = ["FORMAT", "StaleCache", "cached", "load", "save"]

FORMAT = 1   # this module's layout of the tree and arrays


class StaleCache(ValueError):
    """A cache file of another format or version, or one that cannot be decoded."""


def _encode(obj: Any, arrays: dict[str, np.ndarray], types: dict[str, type]) -> Any:
    if isinstance(obj, np.ndarray) and obj.dtype == object:
        if not all(isinstance(v, str) for v in obj.ravel()):
            raise TypeError("object arrays of other things than strings are not cached (they would need pickle)")
        return {"__strings__": obj.tolist()}
    if isinstance(obj, np.ndarray):
        name = f"a{len(arrays)}"
        arrays[name] = obj
        return {"__array__": name}
    if dataclasses.is_dataclass(obj) and type(obj).__name__ in types:
        fields = {f.name: _encode(getattr(obj, f.name), arrays, types) for f in dataclasses.fields(obj)}
        return {"__dataclass__": type(obj).__name__, "fields": fields}
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            return {"__dict__": {k: _encode(v, arrays, types) for k, v in obj.items()}}
        return {"__items__": [[_encode(k, arrays, types), _encode(v, arrays, types)] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, arrays, types) for v in obj]}
    if isinstance(obj, list):
        return [_encode(v, arrays, types) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    raise TypeError(f"cannot cache a {type(obj).__name__}")


def _decode(tree: Any, arrays, types: dict[str, type]) -> Any:
    if isinstance(tree, list):
        return [_decode(v, arrays, types) for v in tree]
    if not isinstance(tree, dict):
        return tree
    if "__strings__" in tree:
        return np.array(tree["__strings__"], dtype=object)
    if "__array__" in tree:
        return arrays[tree["__array__"]]
    if "__dataclass__" in tree:
        return types[tree["__dataclass__"]](**{k: _decode(v, arrays, types) for k, v in tree["fields"].items()})
    if "__dict__" in tree:
        return {k: _decode(v, arrays, types) for k, v in tree["__dict__"].items()}
    if "__items__" in tree:
        return {_hashable(_decode(k, arrays, types)): _decode(v, arrays, types) for k, v in tree["__items__"]}
    if "__tuple__" in tree:
        return tuple(_decode(v, arrays, types) for v in tree["__tuple__"])
    raise StaleCache(f"unknown node {sorted(tree)}")


def _hashable(key: Any) -> Any:
    return tuple(_hashable(k) for k in key) if isinstance(key, (list, tuple)) else key


def save(path: Path, obj: Any, version: int, types: tuple[type, ...] = ()) -> None:
    """Store `obj` at `path` (atomically), tagged with `version`."""
    arrays: dict[str, np.ndarray] = {}
    tree = _encode(obj, arrays, {t.__name__: t for t in types})
    header = json.dumps({"format": FORMAT, "version": version, "tree": tree})
    buffer = io.BytesIO()
    np.savez(buffer, __header__=np.array(header), **arrays)
    atomic_write(path, buffer.getvalue())


def load(path: Path, version: int, types: tuple[type, ...] = ()) -> Any:
    """What `save` stored at `path`; `StaleCache` for another format or version or an unreadable file."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            header = json.loads(str(npz["__header__"]))
            if (header.get("format"), header.get("version")) != (FORMAT, version):
                raise StaleCache(f"format {header.get('format')} version {header.get('version')}, "
                                 f"this code reads format {FORMAT} version {version}")
            arrays = {name: npz[name] for name in npz.files if name != "__header__"}
            return _decode(header["tree"], arrays, {t.__name__: t for t in types})
    except (ValueError, KeyError, EOFError, zipfile.BadZipFile, TypeError) as error:  # StaleCache is a ValueError
        raise StaleCache(str(error) or type(error).__name__) from None


def cached(path: Path, version: int, build: Callable[[], Any], types: tuple[type, ...] = ()) -> Any:
    """The object stored at `path` for `version`, or `build()`'s result, stored there for next time."""
    if path.exists():
        try:
            return load(path, version, types)
        except StaleCache as why:
            print(f"cache {path}: rebuilt ({why})", file=sys.stderr)
    result = build()
    save(path, result, version, types)
    return result
