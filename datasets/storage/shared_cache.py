"""A node's `.beton` cache warmed from shared storage: worker nodes that share no disk copy the
driver's files instead of checking and converting the images again while their trial holds a GPU.

With `SWEEPS_BETON_STORE` set to a location (a path or an `s3://` URI; the engine sets it to
`<storage>/betons` for a sweep on `s3://`, for the driver and every trial):
- the driver, having written or found the files its trials read, `publish`es each once: every
  `.beton` and the image check's record beside it (`<name>.skipped.txt`), so a node neither
  converts nor re-checks;
- a trial about to produce such a file that its node lacks first `fetch`es it: a streamed copy into
  the node's cache (`SWEEPS_CACHE`), under the node-local lock the conversion would take, renamed
  into place when complete. A file the store lacks is made on the node as before.
Files are named by their content hash, so a published file never changes and one already in the
store is not uploaded again.
"""
from __future__ import annotations

import os
from pathlib import Path

from datasets.storage.location import Location

__all__ = ["STORE_ENV", "beton_store", "fetch", "publish"]

STORE_ENV = "SWEEPS_BETON_STORE"


def beton_store() -> Location | None:
    """The shared store of `.beton` files, or None (each node makes its own)."""
    value = os.environ.get(STORE_ENV)
    return Location.of(value) if value else None


def fetch(path: Path) -> bool:
    """Copy `<store>/<path.name>` to `path` if the store has it; True when it did."""
    store = beton_store()
    if store is None or path.exists():
        return False
    stored = store / path.name
    if not stored.is_file():
        return False
    stored.download_file(path)
    print(f"fetched {path.name} from {store} into {path.parent}", flush=True)
    return True


def publish(path: Path) -> bool:
    """Upload `path` to `<store>/<path.name>` unless it is there already; True when it uploaded."""
    store = beton_store()
    if store is None:
        return False
    stored = store / path.name
    if stored.is_file():
        return False
    print(f"sharing {path.name} ({path.stat().st_size / 2**20:.1f} MiB) with the other nodes through {store}",
          flush=True)
    stored.upload_file(path)
    return True
