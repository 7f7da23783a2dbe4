"""Data quantity (Ramanujan et al., Sec. 4.1, Fig. 5): does pre-training on fewer images lower effective robustness?

Pre-train on class-balanced random subsets of 5K, 25K, 50K, 100K and 150K images of ImageNet
(all 1000 classes) and of iNaturalist 2017 (its 1000 most frequent species, equal images each),
fine-tune 12 epochs on iWildCam-WILDS, and compare with models trained from scratch and with
models pre-trained on each full source (one `full` trend per source).
"""
import sys

from analysis.claims import Claim, higher
from engine import EMBEDDED_RECIPE, REFERENCE_RECIPE, SweepSpec
from engine.cli import EMBEDDED_ARCHS, EMBEDDED_SEEDS, REAL_ARCHS, embedded_help, sweep_main

SCALED = ("synthnet (50 classes x 80 images = 4,000, the `full` baseline) -> synthcam; subsets of 500, 1,000 and "
          "2,000 images (vs 5K..150K of 1.28M); resnet18 and mobilenet_v3_small (vs six ImageNet architectures); "
          "one source (vs ImageNet and iNaturalist).")

CLAIMS = [
    Claim("pre-training on the full source gives positive ER (above the scratch trend)", higher("full")),
    Claim("less pre-training data lowers ER: the smallest subset's ER is below the full source's",
          higher("full", "quantity=min")),
    Claim("ER rises with quantity: the largest subset's ER is above the smallest's", higher("quantity=max", "quantity=min")),
]


def build(args) -> SweepSpec:
    if args.data_root:
        return SweepSpec(
            name="data_quantity", intervention="quantity", values=(5000, 25000, 50000, 100000, 150000),
            sources=("imagenet", "inat2017"), target="iwildcam", baselines=("scratch", "full"), archs=REAL_ARCHS,
            intervention_params={"inat2017": {"num_classes": 1000}}, recipe=REFERENCE_RECIPE,
        )
    return SweepSpec(
        name="data_quantity", intervention="quantity", values=(500, 1000, 2000), smoke_values=(100, 400),
        sources=("synthnet",), target="synthcam", baselines=("scratch", "full"), archs=EMBEDDED_ARCHS, seeds=EMBEDDED_SEEDS,
        recipe=EMBEDDED_RECIPE,
    )


if __name__ == "__main__":
    sys.exit(sweep_main(build, __doc__.splitlines()[0], epilog=embedded_help(SCALED),
                        report_options={"claims": CLAIMS}))
