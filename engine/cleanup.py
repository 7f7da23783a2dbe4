"""`python -m engine.cleanup`: free what no sweep references any more. Dry run unless `--delete`.

What goes, in a storage root (`--storage-path`, default `$SWEEPS_STORAGE` or ~/robustness_sweeps; a
path or an `s3://` URI):
- `<sweep>.old-<time>/`: sweeps that `--fresh` moved aside;
- `pretrained/<key>/`: pre-trained models that no cell of any remaining sweep would load (the key of
  each cell's `PretrainInputs`, read from the configs Tune recorded);
and in the `.beton` cache (`--cache`, default $SWEEPS_CACHE or ~/.cache/robustness_sweeps):
- `betons/*.beton` (with their lock file) that no remaining trial or pre-trained
  model names in its provenance. A cache shared by several storage roots: run it with each, or not
  at all (a removed file is rebuilt when a sweep needs it again, at the cost of converting it).

It prints one line per item with its size, then the total; with `--delete` it removes them. When a
recorded config cannot be read (another schema, a damaged snapshot), nothing under `pretrained/`
is removed: which models it needs is unknown.
"""
from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from engine.inputs import FinetuneInputs
from datasets.storage.location import Location, StorageError
from engine.sweep_dir import configs_in, experiments

__all__ = ["Item", "find_unused", "main"]


@dataclass(frozen=True)
class Item:
    path: Location
    size: int      # bytes
    why: str


def _sweeps(storage: Location) -> tuple[list[Location], list[Location]]:
    """(live sweep directories, directories moved aside by --fresh)."""
    live, old = [], []
    for path in storage.entries(kind="dir"):
        if path.name == "pretrained" or path.name.startswith("."):
            continue
        (old if ".old-" in path.name else live).append(path)
    return live, old


def _trial_data_files(sweep: Location) -> set[str]:
    """Names of the `.beton` files the trials of `sweep` read (their checkpoints' provenance)."""
    names = set()
    records = [c / "cell.json" for e in sweep.entries("exp-*", kind="dir") for t in e.entries("cell-*", kind="dir")
               for c in t.entries("checkpoint_*", kind="dir")]
    for record in records:
        try:
            names |= set(json.loads(record.read_text())["provenance"]["data_files"].values())
        except (OSError, ValueError, KeyError, AttributeError):
            continue
    return names


def find_unused(storage: Path | Location, cache: Path | Location) -> tuple[list[Item], list[str]]:
    """(what no sweep references, notes on what was kept because it could not be decided)."""
    storage, cache = Location.of(storage), Location.of(cache)
    items: list[Item] = []
    notes: list[str] = []
    live, old = _sweeps(storage)
    items += [Item(p, p.total_size(), "moved aside by --fresh") for p in old]

    keys, unreadable = set(), 0
    for sweep in live:
        for experiment in experiments(sweep):
            try:
                configs = configs_in(experiment)
            except (OSError, ValueError, KeyError):
                unreadable += 1
                continue
            for config in configs:
                try:
                    pretrained = FinetuneInputs.from_config(config).pretrained
                except (KeyError, TypeError, ValueError):
                    unreadable += 1
                    continue
                if pretrained is not None:
                    keys.add(pretrained.key)
    used_files = set().union(*(_trial_data_files(s) for s in live)) if live else set()
    models = (storage / "pretrained").entries(kind="dir")
    if unreadable:
        notes.append(f"kept every pre-trained model: {unreadable} recorded configs could not be read, so which "
                     "models they need is unknown")
    else:
        items += [Item(p, p.total_size(), "no cell of any sweep loads it") for p in models if p.name not in keys]
    for model in models:
        if model.name in keys or unreadable:
            try:
                used_files |= set(json.loads((model / "meta.json").read_text()).get("data_files", {}).values())
            except (OSError, ValueError):
                continue
    for beton in (cache / "betons").entries("*.beton", kind="file"):
        if beton.name not in used_files:
            extras = [p for p in (beton.with_name(beton.name + ".lock"),) if p.exists()]
            items += [Item(beton, beton.total_size(), "no trial or pre-trained model names it")]
            items += [Item(p, p.total_size(), "its .beton is unused") for p in extras]
    return items, notes


def _mib(size: int) -> str:
    return f"{size / 2**20:9.1f} MiB"


def main(argv: list[str] | None = None) -> int:
    from analysis.cli_parser import OneLineParser

    p = OneLineParser(prog="python -m engine.cleanup", description=__doc__.splitlines()[0])
    p.add_argument("--storage-path", metavar="PATH|s3://BUCKET/PREFIX",
                   help="storage root (default $SWEEPS_STORAGE or ~/robustness_sweeps)")
    p.add_argument("--cache", metavar="DIR", help="the .beton cache (default $SWEEPS_CACHE or ~/.cache/robustness_sweeps)")
    p.add_argument("--delete", action="store_true", help="remove what is listed (default: only list it)")
    args = p.parse_args(argv)
    from datasets.storage.beton import cache_root

    try:
        storage = Location.of(args.storage_path or os.environ.get("SWEEPS_STORAGE") or "~/robustness_sweeps")
    except StorageError as error:
        print(f"error: --storage-path {error}", file=sys.stderr)
        return 2
    cache = Location.of(Path(args.cache).expanduser() if args.cache else cache_root())
    if not storage.is_dir():
        print(f"error: --storage-path {storage}: no such directory", file=sys.stderr)
        return 2
    items, notes = find_unused(storage, cache)
    for note in notes:
        print(note)
    verb = "freed" if args.delete else "would free"
    for item in items:
        print(f"{verb} {_mib(item.size)}  {item.path}  ({item.why})")
        if args.delete:
            item.path.remove()
    total = sum(i.size for i in items)
    print(f"{verb} {_mib(total).strip()} in {len(items)} items" + ("" if args.delete else "; add --delete to remove them"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
