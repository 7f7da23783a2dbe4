"""Baselines (Ramanujan et al., Fig. 4's blue and cyan lines): models trained from scratch on the target, and models pre-trained on each full source.

Every other sweep measures effective robustness against these two trends. The `full` cells'
pre-trained models live in the shared pre-trained cache, so the other sweeps' `full` cells (same
source, architecture, seed and recipe) reuse them instead of pre-training again, and
`python -m analysis report <storage>/<sweep> <storage>/baselines` reports a sweep together with them.
`--weights [imagenet:]ARCH=PATH` starts a `full` cell from a local torchvision checkpoint (e.g.
torchvision's ImageNet weights) instead of 90 epochs of pre-training; the file's hash enters the
cell id.
"""
import sys

from analysis.claims import Claim, higher
from engine import EMBEDDED_RECIPE, REFERENCE_RECIPE, SweepSpec
from engine.cli import EMBEDDED_ARCHS, EMBEDDED_SEEDS, REAL_ARCHS, embedded_help, sweep_main

SCALED = "synthnet (50 classes x 80 images) -> synthcam; resnet18 and mobilenet_v3_small; one source (vs ImageNet and iNaturalist)."

CLAIMS = [Claim("models pre-trained on the full source lie above the scratch trend (positive ER)", higher("full"))]


def build(args) -> SweepSpec:
    if args.data_root:
        return SweepSpec(name="baselines", sources=("imagenet", "inat2017"), target="iwildcam",
                         baselines=("scratch", "full"), archs=REAL_ARCHS, recipe=REFERENCE_RECIPE)
    return SweepSpec(name="baselines", sources=("synthnet",), target="synthcam", baselines=("scratch", "full"),
                     archs=EMBEDDED_ARCHS, seeds=EMBEDDED_SEEDS, recipe=EMBEDDED_RECIPE)


if __name__ == "__main__":
    sys.exit(sweep_main(build, __doc__.splitlines()[0], epilog=embedded_help(SCALED),
                        report_options={"claims": CLAIMS}))
