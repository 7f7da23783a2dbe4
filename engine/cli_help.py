"""The words of a sweep script's `--help`: the valid choices of each grid flag, and the recipes.

A flag's help names what it accepts *for this sweep* (its sources, targets, intervention values,
architectures and seeds, on the embedded default and with `--data-root`), read from the script's
own `build`, so the help can never disagree with what the flags accept.
"""
from __future__ import annotations

import argparse
import textwrap
from dataclasses import dataclass, field
from typing import Callable

from engine.spec import SweepSpec

__all__ = ["RECIPE_HELP", "SweepChoices", "embedded_help", "plain", "sweep_choices"]

RECIPE_HELP = """\
Recipes. With --data-root: pre-training follows PyTorch's reference ImageNet recipe (SGD, momentum
0.9, lr 0.1 per 256 images (AlexNet 0.01), weight decay 1e-4, 90 epochs, lr x0.1 at epochs 30 and
60, RandomResizedCrop(224) scale (0.08, 1) + flip, evaluation Resize(256) + CenterCrop(224), each
architecture's own batch-norm momentum, bf16; MobileNet-V3 takes this SGD recipe too, since its own
600-epoch RMSprop recipe cannot fit 90 epochs), fine-tuning WILDS' iWildCam defaults (Adam, lr 3e-5,
no weight decay, batch 16, 12 epochs, 448 px, fp32). Scratch cells train with the fine-tuning recipe.
Embedded default (no --data-root), scaled for 2 CPU cores: two seeds (four trials per group), 32 px,
3 pre-training epochs with warm-up + cosine (vs 90 step), crop scale (0.5, 1) (vs 0.08), batch-norm
momentum 0.1, fine-tuning 4 epochs (vs 12) at lr 1e-3 (vs 3e-5) and batch 32, fp32. --smoke: 1
pre-training and 2 fine-tuning epochs at 32 px, one architecture, one seed, two values, smaller data,
the sweep's recipe otherwise."""


def plain(text: str) -> str:
    """Terminal text from docstring-style text: no `code` backticks."""
    return text.replace("``", "").replace("`", "")


def embedded_help(scaled: str) -> str:
    """A script's --help epilog: what its embedded default scales down (`scaled`), then the recipes."""
    return "\n".join(textwrap.wrap(plain(f"Embedded default: {scaled}"), 100)) + f"\n\n{RECIPE_HELP}"


@dataclass
class SweepChoices:
    """What the grid flags accept, per variant of the sweep ("embedded default", "with --data-root")."""

    sources: dict[str, tuple] = field(default_factory=dict)
    targets: dict[str, tuple] = field(default_factory=dict)
    values: dict[str, tuple] = field(default_factory=dict)       # "quantity = 500, 1000" entries
    archs: dict[str, tuple] = field(default_factory=dict)
    seeds: dict[str, int] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)    # variant -> why it cannot be shown

    def text(self, what: str) -> str:
        """`synthnet (embedded default); imagenet, inat2017 (with --data-root)` for one flag."""
        table = getattr(self, what)
        sep = " / " if what == "values" else ", "  # values of several interventions: "depth 2, 4 / quantity 500"
        parts = [f"{sep.join(map(str, items)) if isinstance(items, tuple) else items} ({variant})"
                 for variant, items in table.items()]
        parts += [f"see the epilog ({variant})" for variant in self.unavailable]
        return "; ".join(parts)


def sweep_choices(build: Callable[[argparse.Namespace], SweepSpec], defaults: argparse.Namespace) -> SweepChoices:
    """The choices of the sweep `build` makes with the default flags, without and with --data-root."""
    choices = SweepChoices()
    for variant, data_root in (("embedded default", None), ("with --data-root", "DATA_ROOT")):
        try:
            spec = build(argparse.Namespace(**{**vars(defaults), "data_root": data_root}))
        except ValueError as error:  # e.g. clip_finetune needs --weights with --data-root
            choices.unavailable[variant] = str(error)
            continue
        choices.sources[variant] = spec.pretraining_sources()
        choices.targets[variant] = tuple(t.name for t in spec.all_targets())
        choices.values[variant] = tuple(f"{arm.intervention} {', '.join(map(str, arm.values))}"
                                        for arm in spec.all_arms() if arm.values != (None,))
        choices.archs[variant] = spec.archs
        choices.seeds[variant] = spec.seeds
    return choices


def architectures_help() -> str:
    """Every architecture --archs accepts (the registry), wrapped for the epilog."""
    from engine.archs import ARCHS

    return "\n".join(textwrap.wrap(
        f"Architectures (--archs): {', '.join(sorted(ARCHS))}; open_clip model names (ViT-B-32, RN50, ...) "
        "with --weights.", 100))


def unavailable_help(choices: SweepChoices) -> str:
    return "\n".join("\n".join(textwrap.wrap(f"{variant.capitalize()}: {reason}", 100))
                     for variant, reason in choices.unavailable.items())
