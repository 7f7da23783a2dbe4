"""Data sources (Ramanujan et al., Sec. 4.5, Fig. 10): natural, synthetic and generated pre-training data at equal quantity.

ImageNet, iNaturalist (its 1000 most frequent species), FractalDB (1000 generated fractal
classes, Kataoka et al.) and Stable Diffusion images of the ImageNet classes (a folder of wnid
class folders under `<data-root>/stable_diffusion/`), each class-balanced at 150K images, and
at about 1.2M images as the `full` baseline of every source that has that many (ImageNet 1.28M,
FractalDB-1k 1M, Stable Diffusion 1.2M; iNaturalist has 579K). A downloaded FractalDB-1k can
replace the generator: `--sources ...,fractaldb1k` reads `<data-root>/FractalDB-1k/`. The paper's
findings: at 150K diffusion images behave like ImageNet and iNaturalist; at ~1.2M they lag the
natural sources; FractalDB lies below the natural sources and above scratch.
"""
import sys

from analysis.claims import Claim, higher, overlap
from engine import EMBEDDED_RECIPE, REFERENCE_RECIPE, SweepSpec
from engine.cli import EMBEDDED_ARCHS, EMBEDDED_SEEDS, REAL_ARCHS, embedded_help, sweep_main

SCALED = ("synthnet (natural-like, 50 classes x 80) against generated FractalDB (50 classes x 80), each at 2,000 "
          "class-balanced images and in full (4,000); no iNaturalist or diffusion images; resnet18 and "
          "mobilenet_v3_small.")

CLAIMS = [
    Claim("natural data lies above FractalDB (ImageNet's full ER above FractalDB's)",
          higher("imagenet/full|synthnet/full", "fractaldb/full|fractaldb1k/full")),
    Claim("FractalDB lies above scratch (positive ER)", higher("fractaldb/full|fractaldb1k/full")),
    Claim("at 150K, Stable Diffusion images behave like ImageNet (CIs overlap)",
          overlap("stable_diffusion/quantity=150000", "imagenet/quantity=150000")),
]


def build(args) -> SweepSpec:
    if args.data_root:
        return SweepSpec(
            name="data_sources", intervention="quantity", values=(150000,),
            sources=("imagenet", "inat2017", "fractaldb", "stable_diffusion"), target="iwildcam",
            baselines=("scratch", "full"), full_sources=("imagenet", "fractaldb", "fractaldb1k", "stable_diffusion"),
            archs=REAL_ARCHS, recipe=REFERENCE_RECIPE,
            source_options={"fractaldb": {"num_classes": 1000, "images_per_class": 1000, "val_per_class": 10,
                                          "resolution": 224}},
            intervention_params={"inat2017": {"num_classes": 1000}},
        )
    return SweepSpec(
        name="data_sources", intervention="quantity", values=(2000,), smoke_values=(300,),
        sources=("synthnet", "fractaldb"), target="synthcam", baselines=("scratch", "full"), archs=EMBEDDED_ARCHS,
        seeds=EMBEDDED_SEEDS, recipe=EMBEDDED_RECIPE, source_options={"fractaldb": {"num_classes": 50, "images_per_class": 80}},
    )


if __name__ == "__main__":
    sys.exit(sweep_main(build, __doc__.splitlines()[0], epilog=embedded_help(SCALED),
                        report_options={"claims": CLAIMS}))
