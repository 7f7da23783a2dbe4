"""Image diversity (Ramanujan et al., Sec. 4.4, Fig. 8-9, Table 2): more classes or more images per class; more subclasses per class.

(a) A fixed budget of 60K images spread over k = 100, 250 or 1000 random ImageNet classes (600,
240, 60 images each), and of 300K over k = 250 or 1000; a k whose drawn classes cannot fill the
budget is dropped with a printed line. (b) Per-class diversity: BREEDS superclasses (16 x 12
ImageNet subclasses) labelled by superclass, using 4, 8 or 12 subclasses each (p = 0.33, 0.67,
1.0) at 80K images; iNaturalist's 7 supercategories with 33%, 67% or all of their species at 80K
images, drawn with replacement. Fine-tuned 12 epochs on iWildCam-WILDS against scratch. The
paper's findings: no difference in either.
"""
import sys

from analysis.claims import Claim, overlap
from engine import EMBEDDED_RECIPE, REFERENCE_RECIPE, Arm, SweepSpec
from engine.cli import EMBEDDED_ARCHS, EMBEDDED_SEEDS, REAL_ARCHS, embedded_help, sweep_main

SCALED = ("(a) 1,000 images over 25 or 100 of synthnet's 100 classes (40 or 10 each; vs 60K and 300K over 100..1000 "
          "of ImageNet's classes); (b) synthnet_breeds, the 192 BREEDS classes drawn by synthnet (30 images each), "
          "4/8/12 subclasses per superclass at 1,600 images (vs 80K); no iNaturalist; resnet18 and mobilenet_v3_small.")

CLAIMS = [
    Claim("more classes or more images per class at a fixed budget: no difference (CIs of the fewest and most "
          "classes overlap)", overlap("classes=min", "classes=max")),
    Claim("more subclasses per class: no difference (CIs of p = 0.33 and 1.0 overlap)",
          overlap("diversity=min", "diversity=max")),
]


def build(args) -> SweepSpec:
    diversity = (0.33, 0.67, 1.0)
    if args.data_root:
        return SweepSpec(
            name="image_diversity", sources=("imagenet", "inat2017"), target="iwildcam", archs=REAL_ARCHS,
            recipe=REFERENCE_RECIPE,
            arms=(Arm("classes", (100, 250, 1000), params={"budget": 60000}, sources=("imagenet",)),
                  Arm("classes", (250, 1000), params={"budget": 300000}, sources=("imagenet",)),
                  Arm("diversity", diversity, params={"budget": 80000})),
        )
    return SweepSpec(
        name="image_diversity", sources=("synthnet", "synthnet_breeds"), target="synthcam", archs=EMBEDDED_ARCHS,
        seeds=EMBEDDED_SEEDS, recipe=EMBEDDED_RECIPE, source_options={"synthnet": {"num_classes": 100, "images_per_class": 40}},
        arms=(Arm("classes", (25, 100), params={"budget": 1000}, sources=("synthnet",), smoke_values=(5, 20),
                  smoke_params={"budget": 100}),
              Arm("diversity", diversity, params={"budget": 1600}, sources=("synthnet_breeds",), smoke_values=(0.67,),
                  smoke_params={"budget": 320})),
    )


if __name__ == "__main__":
    sys.exit(sweep_main(build, __doc__.splitlines()[0], epilog=embedded_help(SCALED),
                        report_options={"claims": CLAIMS}))
