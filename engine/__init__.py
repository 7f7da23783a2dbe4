"""Sweep specs, the Tune trainable, training loops, the architecture registry and resumption."""
from engine.recipes import EMBEDDED_RECIPE, REFERENCE_RECIPE, Recipe
from engine.spec import Arm, SweepSpec, Target, cell_id, cells, pretrain_id

__all__ = ["EMBEDDED_RECIPE", "REFERENCE_RECIPE", "Arm", "Recipe", "SweepSpec", "Target", "cell_id", "cells",
           "pretrain_id"]
