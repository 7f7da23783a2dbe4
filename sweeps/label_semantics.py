"""Label semantics (Ramanujan et al., Sec. 4.3, Fig. 7): does pre-training on animal classes help an animal target more than on other objects?

ImageNet's classes under WordNet's `animal.n.01` (398) against all the others (602, "object"),
fine-tuned 12 epochs on iWildCam-WILDS (an animal task), with scratch and full-ImageNet
baselines. The sides are balanced to equal image counts by default (the larger side subsampled,
class-balanced); the paper describes no subsampling, so the report says which was used
(`balanced` is the intervention's parameter). The paper's finding: no difference between the two.
"""
import sys

from analysis.claims import Claim, overlap
from engine import EMBEDDED_RECIPE, REFERENCE_RECIPE, SweepSpec
from engine.cli import EMBEDDED_ARCHS, EMBEDDED_SEEDS, REAL_ARCHS, embedded_help, sweep_main

SCALED = ("synthnet's 50 classes split by WordNet into 19 animal and 31 object classes, balanced to 1,520 images "
          "each (vs 398 and 602 ImageNet classes); resnet18 and mobilenet_v3_small.")

CLAIMS = [Claim("animal and object classes give the same ER (their CIs overlap)",
                 overlap("semantics=animal", "semantics=object"))]


def build(args) -> SweepSpec:
    if args.data_root:
        return SweepSpec(name="label_semantics", intervention="semantics", values=("animal", "object"),
                         sources=("imagenet",), target="iwildcam", baselines=("scratch", "full"), archs=REAL_ARCHS,
                         recipe=REFERENCE_RECIPE)
    return SweepSpec(name="label_semantics", intervention="semantics", values=("animal", "object"),
                     sources=("synthnet",), target="synthcam", baselines=("scratch", "full"), archs=EMBEDDED_ARCHS,
                     seeds=EMBEDDED_SEEDS, recipe=EMBEDDED_RECIPE)


if __name__ == "__main__":
    sys.exit(sweep_main(build, __doc__.splitlines()[0], epilog=embedded_help(SCALED),
                        report_options={"claims": CLAIMS}))
