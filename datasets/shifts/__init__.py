"""Dataset shifts as deterministic transforms of a source's images (Cohen-Wang et al.; docs/PROTOCOL.md 5).

`transforms.py`: the class colours, the per-image tint draw and the registry of shifts; `source.py`:
the `support_shift` source, a reference distribution and its shifted test sets over any base source.
"""
