"""In-support vs out-of-support shifts (Cohen-Wang, Vendrow, Madry 2024): which shifts does pre-training help?

Each reference distribution is a fine-tuning target: the target's images tinted (alpha 0.25) with
their own class's colour with probability p in {0.5, 0.6, 0.7, 0.8, 0.9}, else another class's
colour; its shifted test set tints independently of the label, an *in-support* shift (only a
dataset bias breaks). And an untinted reference whose shifted test sets are tinted and upside
down, *out-of-support* shifts (new kinds of images). Models trained from scratch and models
pre-trained on the full source are fine-tuned on each reference and evaluated on its shifted
sets (`ood_tint_*`, `ood_flip_*`); the report gives the ER of pre-trained vs scratch on each shift,
grouped by support, with 95% bootstrap CIs. The paper's rule of thumb: pre-training helps
out-of-support shifts, and cannot undo the dataset bias behind in-support ones.

Your own shift: `split` writes the split of two folders of images; `--reference DIR --shifted DIR
--split FILE` then makes that pair the sweep's one target (`shift_folders`), evaluated on the whole
shifted set and on each of its two parts (`ood_in_support_*`, `ood_out_of_support_*`).
"""
import re
import sys
from dataclasses import replace
from pathlib import Path
from textwrap import fill

from analysis.claims import Claim, support_rule
from engine import EMBEDDED_RECIPE, REFERENCE_RECIPE, SweepSpec, Target
from engine.cli import EMBEDDED_ARCHS, EMBEDDED_SEEDS, REAL_ARCHS, embedded_help, sweep_main
from engine.features import write_natural_features
from engine.split_files import write_user_splits

P_GRID = (0.9, 0.8, 0.7, 0.6, 0.5)
# The embedded reference: synthnet-style classes other than the pre-training source's draw (seed 1).
EMBEDDED_BASE = {"num_classes": 10, "images_per_class": 40, "val_per_class": 20, "seed": 1}
EMBEDDED_P = (0.9, 0.7, 0.5)
# Natural shifts split into in-support and out-of-support parts:
# target -> [(reference split, shifted split, the shifted split's domain or None for all of it)].
NATURAL = {"synthcam": [("id_test", "test", None)]}
NATURAL_REAL = {"untinted": [("id_test", "test", "imagenet_v2"), ("id_test", "test", "imagenet_sketch")]}
SCALED = ("references over 10 synthnet classes (seed 1: 40 training and 20 test images per class, 32 px), vs "
          "ImageNet's 1000; tint p in {0.9, 0.7, 0.5} (of 0.5..0.9); pre-trained on synthnet (50 classes x 80, "
          f"seed 0); {' and '.join(EMBEDDED_ARCHS)}, {EMBEDDED_SEEDS} seeds each (vs six architectures); the natural "
          "shift split is synthcam's new locations (vs ImageNet-V2 and ImageNet-Sketch).")

CLAIMS = [
    Claim("pre-training helps on out-of-support shifts (every out-of-support ER CI above 0)",
          support_rule("out-of-support", helps=True)),
    Claim("pre-training does not help on in-support shifts (no in-support ER CI above 0)",
          support_rule("in-support", helps=False)),
]


def targets(base: str, base_options: dict, p_grid: tuple[float, ...], natural: tuple[str, ...] = ()
            ) -> tuple[Target, ...]:
    """The grid of reference distributions: untinted (shifts: tint, flip, and `natural` sets), then tinted
    with each p (shift: tint)."""
    common = {"base": base, "base_options": base_options}
    extra = {"natural": list(natural)} if natural else {}
    return (Target("untinted", "support_shift", {**common, "p": None, "shifts": ["tint", "flip"], **extra}),
            *(Target(f"tint-p{p:g}", "support_shift", {**common, "p": p, "shifts": ["tint"]}) for p in p_grid))


def user_flags(p) -> None:
    """The flags of a sweep on your own shift (all three, or none)."""
    g = p.add_argument_group("your own shift (split first: support_shift.py split --help)")
    g.add_argument("--reference", metavar="DIR", help="reference images, one sub-folder per class: fine-tuning "
                   "train, and a held-out fifth of each class as the ID test set")
    g.add_argument("--shifted", metavar="DIR", help="shifted images, in class sub-folders named as the reference's: "
                   "the OOD test set")
    g.add_argument("--split", metavar="FILE", help="the PREFIX.split.csv that the split command wrote for these two folders: "
                   "the shifted images' in-support and out-of-support parts")


def user_target(args) -> Target | None:
    """Your shift as the target `<split file's prefix>`, or None without --reference/--shifted/--split."""
    from datasets.readers.shift_folders import SPLIT_COMMAND, file_sha256

    given = {flag: getattr(args, flag, None) for flag in ("reference", "shifted", "split")}
    if not any(given.values()):
        return None
    missing = [f"--{flag}" for flag, value in given.items() if not value]
    if missing:
        raise ValueError(f"--reference, --shifted and --split go together: {', '.join(missing)} missing")
    split = Path(args.split).expanduser().resolve()
    if not split.is_file():
        raise ValueError(f"--split {args.split}: no such file; write it with: {SPLIT_COMMAND}")
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", split.name.removesuffix(".csv").removesuffix(".split")) or "shift"
    return Target(name, "shift_folders", {"reference": str(Path(args.reference).expanduser().resolve()),
                                          "shifted": str(Path(args.shifted).expanduser().resolve()),
                                          "split": str(split), "split_sha256": file_sha256(split)})


def build(args) -> SweepSpec:
    mine = user_target(args)
    if mine is not None:  # the same cells (scratch vs full, architectures, seeds) on your shift alone
        spec = build_paper(args)
        return replace(spec, name=f"support_shift-{mine.name}", targets=(mine,), smoke_targets=(mine.name,))
    return build_paper(args)


def build_paper(args) -> SweepSpec:
    if args.data_root:
        return SweepSpec(name="support_shift", sources=("imagenet",),
                         targets=targets("imagenet", {}, P_GRID, natural=("imagenet_v2", "imagenet_sketch")),
                         baselines=("scratch", "full"), archs=REAL_ARCHS, recipe=REFERENCE_RECIPE)
    return SweepSpec(name="support_shift", sources=("synthnet",),
                     targets=(*targets("synthnet", EMBEDDED_BASE, EMBEDDED_P), Target("synthcam")),
                     baselines=("scratch", "full"), archs=EMBEDDED_ARCHS, seeds=EMBEDDED_SEEDS,
                     recipe=EMBEDDED_RECIPE, smoke_targets=("untinted", "tint-p0.9", "synthcam"))


def natural_features(directory, spec: SweepSpec, options) -> None:
    """After the cells: the encoder's features of each natural shift, for the report's split; your own
    shift, split by `split` already, has its split file and thumbnails copied into the sweep instead."""
    yours = {t.name for t in spec.all_targets() if t.registered == "shift_folders"}
    natural = NATURAL_REAL if options.data_root else NATURAL
    write_natural_features({k: v for k, v in natural.items() if k not in yours}, directory, spec, options)
    write_user_splits(spec, directory)


if __name__ == "__main__":
    if sys.argv[1:2] == ["split"]:  # split your own shift: python sweeps/support_shift.py split --help
        from engine.split_command import split_main

        sys.exit(split_main(sys.argv[2:]))
    split_help = ("Your own shift: python sweeps/support_shift.py split --reference DIR --shifted DIR --encoder ARCH "
                  "--weights PATH --out PREFIX (see split --help), then python sweeps/support_shift.py --reference DIR "
                  "--shifted DIR --split PREFIX.split.csv: ER of pre-trained vs scratch on its in-support and "
                  "out-of-support parts.")
    sys.exit(sweep_main(build, __doc__.splitlines()[0], epilog=f"{embedded_help(SCALED)}\n\n{fill(split_help, 100)}",
                        report_options={"claims": CLAIMS}, before_report=natural_features, flags=user_flags))
