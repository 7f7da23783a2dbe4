"""CLIP image encoders (open_clip) as classifiers, and contrastive image-text pre-training.

- `image_classifier(arch, num_classes, resolution)`: an open_clip image tower plus a linear head.
  Inputs arrive normalised with ImageNet's mean and std (every loader does that); a fixed affine
  layer converts them to CLIP's own statistics (`OPENAI_DATASET_MEAN/STD`), so real CLIP weights
  see the inputs they were trained on.
- `ClipPretraining`: the whole CLIP model (image and text towers) trained with open_clip's
  `ClipLoss` on images paired with captions of their class: a few templates filled with the
  class's WordNet lemma ("a photo of a tench."), or its name for other sources. Evaluated
  zero-shot (image features against each class's caption features), so the ordinary evaluation
  loop measures it.
- Embedded architectures are small custom open_clip configs (`CONFIGS`) that train on CPU at
  32 px; real ones are open_clip's registered models (`ViT-B-32`, ...) loaded from `--weights`.

open_clip is imported only when a CLIP architecture is built (it takes seconds).
"""
from __future__ import annotations

import functools
import math

import torch
from torch import nn

# Small open_clip configs: vision transformers with patch 4 for 32-px inputs, a 2-layer text tower.
_TEXT = dict(context_length=16, vocab_size=49408, width=128, heads=4, layers=2)
CONFIGS = {
    "clip_vit_mini": dict(embed_dim=128, vision_cfg=dict(layers=2, width=128, head_width=32, mlp_ratio=2.0,
                                                         patch_size=4), text_cfg=_TEXT),
    "clip_vit_tiny": dict(embed_dim=128, vision_cfg=dict(layers=4, width=128, head_width=32, mlp_ratio=2.0,
                                                         patch_size=4), text_cfg=_TEXT),
    "clip_vit_small": dict(embed_dim=128, vision_cfg=dict(layers=6, width=192, head_width=32, mlp_ratio=2.0,
                                                          patch_size=4), text_cfg=_TEXT),
}
TEMPLATES = ("a photo of a {}.", "a picture of a {}.", "an image of a {}.", "a {} in a scene.",
             "a close-up photo of a {}.")
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@functools.cache
def open_clip_models() -> frozenset[str]:
    import open_clip

    return frozenset(open_clip.list_models())


def build_clip(arch: str, resolution: int) -> nn.Module:
    """The whole (randomly initialised) open_clip CLIP model of `arch` for `resolution` px images."""
    import open_clip

    if arch in CONFIGS:
        cfg = CONFIGS[arch]
        return open_clip.CLIP(cfg["embed_dim"], {**cfg["vision_cfg"], "image_size": resolution or 32}, cfg["text_cfg"])
    return open_clip.create_model(arch, pretrained=None, force_image_size=resolution)


def _register_clip_statistics(module: nn.Module) -> None:
    """Buffers `scale`, `shift` with x_clip = x * scale + shift for ImageNet-normalised x, per channel:
    (x * std_in + mean_in - mean) / std. Constants, so not in the state dict."""
    from open_clip import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

    mean_in, std_in = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
    mean, std = torch.tensor(OPENAI_DATASET_MEAN), torch.tensor(OPENAI_DATASET_STD)
    module.register_buffer("scale", (std_in / std).view(1, 3, 1, 1), persistent=False)
    module.register_buffer("shift", ((mean_in - mean) / std).view(1, 3, 1, 1), persistent=False)


class ClipImageClassifier(nn.Module):
    """A CLIP image tower with a linear head; converts ImageNet-normalised inputs to CLIP's statistics."""

    def __init__(self, visual: nn.Module, embed_dim: int, num_classes: int):
        super().__init__()
        _register_clip_statistics(self)
        self.visual = visual
        self.head = nn.Linear(embed_dim, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.visual(images * self.scale + self.shift))


def image_classifier(arch: str, num_classes: int, resolution: int, clip: nn.Module | None = None) -> nn.Module:
    """`arch`'s image tower (of `clip`, or a new random one) with a `num_classes` linear head."""
    clip = clip if clip is not None else build_clip(arch, resolution)
    return ClipImageClassifier(clip.visual, clip.visual.output_dim, num_classes)


def load_open_clip_weights(arch: str, resolution: int, state: dict, path: str) -> nn.Module:
    """A whole CLIP model of `arch` with `state` (an open_clip checkpoint) loaded strictly; the image
    positional embedding is interpolated when `resolution` differs from the checkpoint's."""
    from open_clip.model import resize_pos_embed

    from engine.weights import load_into

    clip = build_clip(arch, resolution)
    state = dict(state)
    resize_pos_embed(state, clip)
    load_into(clip, state, path, arch)
    return clip


def class_names(classes: list[str]) -> list[str]:
    """Readable names: a wnid's first WordNet lemma ("tench"), other class ids as they are."""
    from datasets.hierarchy import is_wnid, synset_of

    return [synset_of(c).lemma_names()[0].replace("_", " ") if is_wnid(c) else c.replace("_", " ")
            for c in classes]


class ClipPretraining(nn.Module):
    """CLIP trained on (image, caption of its class) pairs; `forward` gives zero-shot logits."""

    def __init__(self, arch: str, resolution: int, names: list[str]):
        super().__init__()
        import open_clip

        _register_clip_statistics(self)
        self.clip = build_clip(arch, resolution)
        self.arch = arch
        context = self.clip.context_length
        captions = [t.format(n) for n in names for t in TEMPLATES]  # class-major: row c * T + t
        self.register_buffer("tokens", open_clip.tokenize(captions, context_length=context), persistent=False)
        self.num_templates = len(TEMPLATES)
        self.loss = open_clip.ClipLoss()

    def contrastive_loss(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """CLIP's symmetric InfoNCE over the batch, each image paired with a random caption of its class."""
        pick = torch.randint(self.num_templates, labels.shape, device=labels.device)
        texts = self.tokens[labels * self.num_templates + pick]
        image_features, text_features, scale = self.clip(images * self.scale + self.shift, texts)  # normalised, exp(logit_scale)
        return self.loss(image_features, text_features, scale)

    def after_step(self) -> None:
        with torch.no_grad():  # as open_clip's training loop: the temperature stays at most 100
            self.clip.logit_scale.clamp_(0, math.log(100))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        image_features = self.clip.encode_image(images * self.scale + self.shift, normalize=True)
        text = self.clip.encode_text(self.tokens, normalize=True)
        prototypes = nn.functional.normalize(text.view(-1, self.num_templates, text.shape[-1]).mean(1), dim=-1)
        return image_features @ prototypes.T

    def classifier(self, num_classes: int) -> nn.Module:
        """The trained image tower with a fresh head: what the pre-trained cache keeps."""
        return image_classifier(self.arch, num_classes, 0, clip=self.clip)

