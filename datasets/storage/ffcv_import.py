"""Import FFCV without compiling numba's typed `Dict`: about 4 s saved in every process that uses it.

FFCV 1.0.2 builds one `numba.typed.Dict` at import (`ffcv.fields.rgb_image.IMAGE_MODES`, two
entries: 'jpg' -> 0, 'raw' -> 1), and numba compiles the typed dictionary's machinery for it: 3.8 of
the 4.7 s `import ffcv` takes here (`python -X importtime`), paid again by every Ray trial actor,
every `datasets prepare` and every benchmark. FFCV only ever reads that mapping from Python (to
pick the ints its generated code captures, and when writing), never from jitted code, so a plain
`dict` does the same job. `import_ffcv()` imports FFCV with `numba.typed.Dict` standing in as `dict`
for the duration of that import only; numba's own `Dict` is back right after. This was checked
against FFCV 1.0.2's source (the version pyproject.toml pins; its other `numba.typed.Dict` import,
in `ffcv.memory_managers.base`, is unused); any other FFCV version is imported unpatched.
"""
from __future__ import annotations

import sys
from importlib.metadata import version

CHECKED_FFCV = "1.0.2"


def import_ffcv() -> None:
    """Import FFCV (idempotent); call it before any `from ffcv... import`."""
    if "ffcv.fields.rgb_image" in sys.modules:
        return
    if version("ffcv") != CHECKED_FFCV:
        import ffcv.fields.rgb_image  # noqa: F401  (unpatched: its use of Dict was not checked)
        return
    import numba.typed

    numba.typed.Dict = dict  # shadows the lazy attribute (numba.typed.__getattr__) during the import
    try:
        import ffcv.fields.rgb_image  # noqa: F401  (imports the whole package)
    finally:
        del numba.typed.Dict  # numba's lazy attribute answers again
