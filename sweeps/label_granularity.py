"""Label granularity (Ramanujan et al., Sec. 4.2, Fig. 6): does pre-training on coarser labels lower effective robustness?

ImageNet's 1000 labels contracted along WordNet to depth 2, 4, 5, 6 and 7 (5, 17, 37, 85 and 232
classes; every image kept, only labels change), against the full 1000-class model; iNaturalist's
5,089 species contracted to its 13 supercategories, against full iNaturalist. Fine-tuned 12
epochs on iWildCam-WILDS, with scratch and `full` baselines. The paper's finding: the coarsest
labels (5 classes) lower effective robustness; the others stay near full ImageNet.
"""
import sys

from analysis.claims import Claim, higher
from engine import EMBEDDED_RECIPE, REFERENCE_RECIPE, Arm, SweepSpec
from engine.cli import EMBEDDED_ARCHS, EMBEDDED_SEEDS, REAL_ARCHS, embedded_help, sweep_main

SCALED = ("synthnet's 50 WordNet classes contracted to depth 2, 4 and 6 (2, 4 and 14 classes; vs 5..232 of 1000) "
          "against its full 50 classes; no iNaturalist; resnet18 and mobilenet_v3_small.")

CLAIMS = [Claim("the coarsest labels lower ER: the smallest depth's ER is below the full labels'",
                 higher("full", "depth=min"))]


def build(args) -> SweepSpec:
    if args.data_root:
        return SweepSpec(
            name="label_granularity", sources=("imagenet", "inat2017"), target="iwildcam",
            baselines=("scratch", "full"), archs=REAL_ARCHS, recipe=REFERENCE_RECIPE,
            arms=(Arm("depth", (2, 4, 5, 6, 7), sources=("imagenet",)),
                  Arm("depth", ("supercategory",), sources=("inat2017",))),
        )
    return SweepSpec(name="label_granularity", sources=("synthnet",), target="synthcam", baselines=("scratch", "full"),
                     archs=EMBEDDED_ARCHS, seeds=EMBEDDED_SEEDS, recipe=EMBEDDED_RECIPE,
                     arms=(Arm("depth", (2, 4, 6), smoke_values=(2,)),))


if __name__ == "__main__":
    sys.exit(sweep_main(build, __doc__.splitlines()[0], epilog=embedded_help(SCALED),
                        report_options={"claims": CLAIMS}))
