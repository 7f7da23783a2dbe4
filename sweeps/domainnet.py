"""DomainNet (Ramanujan et al., Sec. 4.7, Fig. 12 and 21): per-domain scratch vs ImageNet pre-training, then interventions on Infograph -> Sketch.

Each of DomainNet's six domains in turn is the fine-tuning target (ID), and every other domain is
evaluated as its own OOD test set (rows carry `ood_<domain>_acc` / `ood_<domain>_f1`; `ood_*` is the
pool of the others); models are trained from scratch or pre-trained on full ImageNet. The report
uses accuracy, as the paper plots, and draws the ID-domain x OOD-domain grid of effective
robustness as a heat map. Then label granularity (WordNet depth 7 and 4: 232 and 17 classes) and
data quantity (5K..150K) of the ImageNet pre-training, fine-tuned on Infograph; their
Infograph -> Sketch scatter: `python -m analysis report <storage>/domainnet --metric acc --ood sketch`.
The paper's finding: only Infograph -> Sketch separates the pre-trained and scratch trends.
"""
import sys

from analysis.claims import Claim, only_pair_separates
from engine import EMBEDDED_RECIPE, REFERENCE_RECIPE, Arm, SweepSpec, Target
from engine.cli import EMBEDDED_ARCHS, EMBEDDED_SEEDS, REAL_ARCHS, embedded_help, sweep_main

DOMAINS = ("infograph", "sketch", "real", "clipart", "painting", "quickdraw")
EMBEDDED_DOMAINS = ("infograph", "sketch", "real", "clipart")
SCALED = ("synthdomains (20 ImageNet classes drawn in 4 styles: infograph, sketch, real, clipart; 30 training and "
          "10 test images per class and domain; vs DomainNet's 345 classes in 6 domains); pre-trained on synthnet "
          "(50 classes x 80); interventions on Infograph: WordNet depth 2 (2 classes) and 1,000 images; "
          "resnet18 and mobilenet_v3_small.")

CLAIMS = [Claim("only Infograph -> Sketch separates the pre-trained and scratch trends (its ER CI excludes 0, "
                 "every other pair's includes it)", only_pair_separates("infograph", "sketch"))]


def build(args) -> SweepSpec:
    if args.data_root:
        targets = tuple(Target(f"domainnet-{d}", "domainnet", {"domain": d}) for d in DOMAINS)
        return SweepSpec(
            name="domainnet", sources=("imagenet",), targets=targets, baselines=("scratch", "full"),
            archs=REAL_ARCHS, recipe=REFERENCE_RECIPE,
            arms=(Arm("depth", (7, 4), targets=("domainnet-infograph",)),
                  Arm("quantity", (5000, 25000, 50000, 100000, 150000), targets=("domainnet-infograph",))),
        )
    targets = tuple(Target(f"synthdomains-{d}", "synthdomains", {"domain": d}) for d in EMBEDDED_DOMAINS)
    return SweepSpec(
        name="domainnet", sources=("synthnet",), targets=targets, baselines=("scratch", "full"), archs=EMBEDDED_ARCHS,
        seeds=EMBEDDED_SEEDS, recipe=EMBEDDED_RECIPE,
        arms=(Arm("depth", (2,), targets=("synthdomains-infograph",)),
              Arm("quantity", (1000,), targets=("synthdomains-infograph",), smoke_values=(200,))),
    )


if __name__ == "__main__":
    sys.exit(sweep_main(build, __doc__.splitlines()[0], epilog=embedded_help(SCALED), report_options={"metric": "acc", "claims": CLAIMS}))
