"""Data quantity (Ramanujan et al., Sec. 4.1): does pre-training on fewer images lower effective robustness?

Pre-train on class-balanced random subsets of 5K, 25K, 50K, 100K and 150K images of ImageNet
(all 1000 classes) and of iNaturalist 2017 (its 1000 most frequent species, equal images each),
fine-tune 12 epochs on iWildCam-WILDS, and compare with models trained from scratch and models
pre-trained on the full source. The embedded default runs the same design on `synthnet` ->
`synthcam` at CPU scale.
"""
import sys

from engine import Recipe, SweepSpec
from engine.cli import EMBEDDED_ARCHS, EMBEDDED_RECIPE, sweep_main


def build(args) -> SweepSpec:
    if args.data_root:
        return SweepSpec(
            name="data_quantity", intervention="quantity", values=(5000, 25000, 50000, 100000, 150000),
            sources=("imagenet", "inat2017"), target="iwildcam", baselines=("scratch", "full"),
            archs=("resnet50", "resnet18", "densenet121", "resnext50_32x4d", "mobilenet_v3_large"),
            intervention_params={"inat2017": {"num_classes": 1000}},
            recipe=Recipe(pretrain_resolution=224, finetune_resolution=448),
        )
    return SweepSpec(
        name="data_quantity", intervention="quantity", values=(500, 1000, 2000, 4000), smoke_values=(100, 400),
        sources=("synthnet",), target="synthcam", archs=EMBEDDED_ARCHS, recipe=EMBEDDED_RECIPE,
    )


if __name__ == "__main__":
    sys.exit(sweep_main(build, __doc__.splitlines()[0]))
