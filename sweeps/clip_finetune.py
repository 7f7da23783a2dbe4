"""CLIP (Ramanujan et al., Sec. 4.6, Fig. 11): do image encoders pre-trained with language supervision land on the ImageNet trend?

With --data-root: fine-tune CLIP image encoders (open_clip architecture names such as ViT-B-32,
weights from local files, nothing downloaded) on iWildCam-WILDS with AdamW at WILDS' lr 3e-5 and
weight decay 0 (with zero decay AdamW equals Adam; the paper names AdamW without a decay) at CLIP's
224 px, 12 epochs. Give each encoder as `--weights SOURCE:ARCH=PATH`, SOURCE naming its
pre-training data (e.g. `openai:ViT-B-32=vit_b_32-openai.pt,laion15m:ViT-B-32=vit_b_32-laion15m.pt`).
Plot them against the ImageNet trend with the baselines sweep:
`python -m analysis report <storage>/clip_finetune <storage>/baselines --baseline imagenet/full`.
The paper's finding: CLIP models lie on the ImageNet-pre-trained trend.

Embedded default: a small CLIP-style model (open_clip custom configs `clip_vit_mini` and
`clip_vit_tiny`: 2- and 4-layer vision transformers with a 2-layer text tower) trained
contrastively on synthnet images paired with captions from their class's WordNet lemma ("a photo
of a tench."), then fine-tuned like every other cell; compared with the same architectures
pre-trained on synthnet's labels (`synthnet/full`) and with scratch.
"""
import sys
from dataclasses import replace

from analysis.claims import Claim, overlap
from engine import EMBEDDED_RECIPE, REFERENCE_RECIPE, Arm, SweepSpec
from engine.cli import EMBEDDED_SEEDS, embedded_help, sweep_main

# ViTs train with AdamW; both the contrastive and the supervised pre-training use it, so they differ
# only in the supervision.
EMBEDDED_CLIP_RECIPE = replace(EMBEDDED_RECIPE, pretrain_optimizer="adamw", pretrain_lr=1e-3,
                               pretrain_weight_decay=0.05, pretrain_epochs=4, finetune_optimizer="adamw")
REAL_CLIP_RECIPE = replace(REFERENCE_RECIPE, finetune_optimizer="adamw", finetune_resolution=224)
SCALED = ("clip_vit_mini and clip_vit_tiny (vs ViT-B-32 and friends), 2 seeds, pre-trained for 4 epochs with AdamW on synthnet "
          "(50 classes x 80 images, vs 400M / 15M image-text pairs), contrastively with caption templates or "
          "supervised with labels; fine-tuned with AdamW at lr 1e-3.")


def weight_sources(text: str | None) -> tuple[str, ...]:
    """The SOURCE names of `--weights SOURCE:ARCH=PATH,...` (default `openai`)."""
    names = [item.split("=")[0].rpartition(":")[0] or "openai" for item in (text or "").split(",") if item.strip()]
    return tuple(dict.fromkeys(names))

CLAIMS = [Claim("CLIP encoders land on the supervised pre-training trend (their ER's CI overlaps the full "
                 "source's)", overlap("clip", "full"))]


def build(args) -> SweepSpec:
    if args.data_root:
        if not args.weights:
            raise ValueError("clip_finetune with --data-root fine-tunes given CLIP encoders: pass --weights "
                             "SOURCE:ARCH=PATH (e.g. openai:ViT-B-32=/models/vit_b_32-openai.pt, an open_clip "
                             "checkpoint saved on a machine with internet); nothing is downloaded here")
        sources = weight_sources(args.weights)
        return SweepSpec(name="clip_finetune", sources=sources, target="iwildcam", baselines=(), archs=("ViT-B-32",),
                         recipe=REAL_CLIP_RECIPE, arms=(Arm("clip", (None,)),))
    return SweepSpec(name="clip_finetune", sources=("synthnet",), target="synthcam", baselines=("scratch", "full"),
                     archs=("clip_vit_tiny", "clip_vit_mini"), seeds=EMBEDDED_SEEDS, recipe=EMBEDDED_CLIP_RECIPE,
                     arms=(Arm("clip", (None,)),))


if __name__ == "__main__":
    sys.exit(sweep_main(build, __doc__.splitlines()[0], epilog=embedded_help(SCALED),
                        report_options={"claims": CLAIMS}))
