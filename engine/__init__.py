"""Sweep specs, the Tune trainable, training loops, the architecture registry and resumption."""
from engine.spec import Recipe, SweepSpec, cells, cell_id, pretrain_id

__all__ = ["Recipe", "SweepSpec", "cells", "cell_id", "pretrain_id"]
