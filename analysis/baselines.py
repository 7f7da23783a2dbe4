"""Baseline trends given as parameters in a YAML or JSON file, instead of re-running them.

For users who take a published trend (e.g. the papers' ImageNet line) rather than fitting it
from their own models. The file holds one entry or a list of entries (or ``{"baselines": [...]}``)::

    - name: imagenet
      slope: 0.92
      intercept: -0.31
      transform: probit     # probit | logit | linear (default probit)

``slope`` and ``intercept`` are in the transformed space of ``transform``, on fractions:
``T(ood) = intercept + slope * T(id)``. The result is a ``Trend`` with ``n = 0`` and
``r2 = nan`` (nothing was fitted).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from analysis.transforms import TRANSFORMS
from analysis.remote import first_line
from analysis.trends import Trend

_KEYS = {"name", "slope", "intercept", "transform"}


def load_baselines(path: str | os.PathLike) -> dict[str, Trend]:
    """Read a baseline file (``.yaml``/``.yml`` or ``.json``) into ``{name: Trend}``.

    Raises ValueError with one line naming the file, the entry and the field for a malformed
    file, and FileNotFoundError for a missing one.
    """
    path = Path(path).expanduser()
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: baseline file does not exist") from None
    kind = "JSON" if path.suffix.lower() == ".json" else "YAML"
    try:
        if kind == "JSON":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:  # noqa: BLE001 -- JSONDecodeError, yaml.YAMLError (no common base)
        raise ValueError(f"{path}: not valid {kind} ({first_line(exc)})") from None
    if isinstance(data, dict) and "baselines" in data:
        data = data["baselines"]
    entries = [data] if isinstance(data, dict) else data
    if not isinstance(entries, list) or not entries:
        raise ValueError(
            f"{path}: expected a baseline entry or a list of them, each with name, slope, "
            "intercept and transform"
        )
    out: dict[str, Trend] = {}
    for i, entry in enumerate(entries):
        where = f"{path}: baseline {i + 1}"
        if not isinstance(entry, dict):
            # A malformed file, not a programming error: the CLI's one-line ValueError.
            msg = f"{where}: expected a mapping with name, slope, intercept, transform"
            raise ValueError(msg)  # noqa: TRY004
        unknown = sorted(set(map(str, entry)) - _KEYS)
        if unknown:
            raise ValueError(f"{where}: unknown field {unknown[0]!r}; allowed: {sorted(_KEYS)}")
        name = entry.get("name")
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"{where}: field 'name' must be a non-empty string")
        where = f"{path}: baseline {name!r}"
        numbers = {}
        for key in ("slope", "intercept"):
            val = entry.get(key)
            if isinstance(val, bool) or not isinstance(val, (int, float)) or not math.isfinite(val):
                raise ValueError(f"{where}: field {key!r} must be a finite number; got {val!r}")
            numbers[key] = float(val)
        transform = entry.get("transform", "probit")
        if transform not in TRANSFORMS:
            raise ValueError(
                f"{where}: field 'transform' must be one of {', '.join(TRANSFORMS)}; "
                f"got {transform!r}"
            )
        if name in out:
            raise ValueError(f"{where}: name given twice")
        out[name] = Trend(numbers["slope"], numbers["intercept"], math.nan, 0, transform)
    return out

