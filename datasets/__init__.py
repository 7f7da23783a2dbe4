"""Data sources, label hierarchies, interventions and the `.beton` cache.

Not Hugging Face's `datasets`: this project's package shares that import name; never install both
in one environment. Importing this package is light (no torch, no FFCV).
"""
from datasets.sources import SOURCES, Source, SourceError, get_source, register_source

__all__ = ["SOURCES", "Source", "SourceError", "get_source", "register_source"]
