"""Procedural rendering of WordNet classes for the embedded sources.

A class is drawn from *traits* that are seeded by its WordNet ancestors, each ancestor depth
deciding one visual property. Classes that share an ancestor therefore share the traits that
ancestor decides (shape family, palette, texture), and classes that only share the root share
nothing. This is what lets WordNet interventions (depth contraction, animal vs object) change
what a model can learn from the rendered images, as they do on ImageNet.

Images are uint8 arrays of shape (H, W, 3). Rendering is deterministic given the seed.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

# Bump when the drawing below changes: every generated source's cache key includes it.
RENDER_VERSION = 1

SHAPES = ("ellipse", "box", "diamond", "triangle", "cross", "ring")
TEXTURES = ("plain", "stripes", "spots", "checks", "gradient")

# How many steps above the leaf sits the ancestor that decides each trait. Counting from the
# leaf (not the root) matters: WordNet's animal subtree is far deeper than its artifact subtree,
# and counting from the root would give every mammal the same shape, hue and texture.
# Far ancestors are shared by many classes (coarse look), near ones by few (fine detail).
SHAPE_UP = 5
ASPECT_UP = 4
HUE_UP = 3
TEXTURE_UP = 2
PATTERN_UP = 1


def stable_seed(*parts: object) -> int:
    """A seed that is the same in every process (unlike hash())."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little")


@dataclass(frozen=True)
class ClassTraits:
    """What a class looks like; every field comes from one ancestor (or the leaf)."""

    shape: str
    aspect: float          # width / height of the body
    hue: float             # body colour, 0..1
    texture: str
    texture_freq: float    # cycles across the body
    texture_angle: float   # radians
    accent_hue: float      # colour of the texture and the part
    part_angle: float      # where the small part sits on the body's edge, radians
    part_size: float       # relative to the body


def class_traits(path: list[str]) -> ClassTraits:
    """Traits of the class at the end of a root-first WordNet path of wnids."""

    def rng_at(steps_up: int, salt: str) -> np.random.Generator:
        node = path[max(len(path) - 1 - steps_up, 0)]
        return np.random.default_rng(stable_seed(node, salt))

    leaf = rng_at(0, "leaf")
    return ClassTraits(
        shape=SHAPES[rng_at(SHAPE_UP, "shape").integers(len(SHAPES))],
        aspect=float(np.exp(rng_at(ASPECT_UP, "aspect").uniform(-0.6, 0.6))),
        hue=float(rng_at(HUE_UP, "hue").uniform()),
        texture=TEXTURES[rng_at(TEXTURE_UP, "texture").integers(len(TEXTURES))],
        texture_freq=float(rng_at(PATTERN_UP, "freq").uniform(1.5, 4.5)),
        texture_angle=float(rng_at(PATTERN_UP, "angle").uniform(0, np.pi)),
        accent_hue=float(leaf.uniform()),
        part_angle=float(leaf.uniform(0, 2 * np.pi)),
        part_size=float(leaf.uniform(0.25, 0.5)),
    )


def hsv_to_rgb(h: np.ndarray | float, s: np.ndarray | float, v: np.ndarray | float) -> np.ndarray:
    """HSV in [0, 1] to RGB in [0, 1]; broadcasts, last axis is the channel."""
    h, s, v = np.broadcast_arrays(np.asarray(h, float), np.asarray(s, float), np.asarray(v, float))
    i = np.floor(h * 6) % 6
    f = h * 6 - np.floor(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    table = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]
    out = np.zeros(h.shape + (3,))
    for k, (r, g, b) in enumerate(table):
        sel = i == k
        out[sel] = np.stack([r[sel], g[sel], b[sel]], axis=-1)
    return out


def _shape_mask(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Soft mask (0..1) of a unit shape in body coordinates u, v."""
    if shape == "ellipse":
        d = np.sqrt(u**2 + v**2)
    elif shape == "box":
        d = np.maximum(np.abs(u), np.abs(v))
    elif shape == "diamond":
        d = np.abs(u) + np.abs(v)
    elif shape == "triangle":
        d = np.maximum(-v * 0.9 + 0.1, np.abs(u) * 1.2 + v * 0.6)
    elif shape == "cross":
        d = np.minimum(np.maximum(np.abs(u) * 2.6, np.abs(v)), np.maximum(np.abs(u), np.abs(v) * 2.6))
    else:  # ring
        r = np.sqrt(u**2 + v**2)
        d = np.maximum(r, 1.7 - r * 1.2)
    return np.clip((1.0 - d) * 6.0, 0.0, 1.0)


def _texture(traits: ClassTraits, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Where (0..1) the accent colour replaces the body colour."""
    a, f = traits.texture_angle, traits.texture_freq * np.pi
    w = u * np.cos(a) + v * np.sin(a)
    if traits.texture == "stripes":
        return (np.sin(f * w) > 0.2).astype(float)
    if traits.texture == "spots":
        return ((np.sin(f * u) * np.sin(f * v)) > 0.45).astype(float)
    if traits.texture == "checks":
        return ((np.sin(f * u) * np.sin(f * v)) > 0).astype(float)
    if traits.texture == "gradient":
        return np.clip(0.5 + w * 0.8, 0, 1)
    return np.zeros_like(u)


def draw_object(
    canvas: np.ndarray,
    traits: ClassTraits,
    rng: np.random.Generator,
    scale: tuple[float, float] = (0.55, 0.9),
    colour_jitter: float = 0.06,
) -> np.ndarray:
    """Draw one instance of a class onto a float RGB canvas (H, W, 3) in [0, 1], in place."""
    size = canvas.shape[0]
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1) * 2 - 1  # [-1, 1]
    s = rng.uniform(*scale)
    cx, cy = rng.uniform(-0.35, 0.35, size=2) * (1.1 - s)
    theta = rng.uniform(-0.5, 0.5)
    flip = -1.0 if rng.uniform() < 0.5 else 1.0
    x, y = (xx - cx) * flip, yy - cy
    u = (x * np.cos(theta) + y * np.sin(theta)) / (s * np.sqrt(traits.aspect))
    v = (-x * np.sin(theta) + y * np.cos(theta)) / (s / np.sqrt(traits.aspect))

    body = _shape_mask(traits.shape, u, v)
    pu, pv = np.cos(traits.part_angle) * 0.95, np.sin(traits.part_angle) * 0.95
    part = np.clip((traits.part_size - np.sqrt((u - pu) ** 2 + (v - pv) ** 2)) * 12.0, 0, 1)

    hue = (traits.hue + rng.normal(0, colour_jitter)) % 1.0
    accent = (traits.accent_hue + rng.normal(0, colour_jitter)) % 1.0
    base_rgb = hsv_to_rgb(hue, rng.uniform(0.55, 0.95), rng.uniform(0.55, 0.95))
    accent_rgb = hsv_to_rgb(accent, rng.uniform(0.5, 0.9), rng.uniform(0.3, 0.9))
    tex = _texture(traits, u, v)[..., None]
    fill = base_rgb * (1 - tex) + accent_rgb * tex

    body = body[..., None]
    canvas[:] = canvas * (1 - body) + fill * body
    part = part[..., None] * (1 - body * 0.3)
    canvas[:] = canvas * (1 - part) + accent_rgb * part
    return canvas


def clutter_background(size: int, rng: np.random.Generator) -> np.ndarray:
    """A random smooth two-colour background with blobs: the 'scene' of a pre-training image."""
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1)
    c1 = hsv_to_rgb(rng.uniform(), rng.uniform(0.1, 0.6), rng.uniform(0.2, 0.9))
    c2 = hsv_to_rgb(rng.uniform(), rng.uniform(0.1, 0.6), rng.uniform(0.2, 0.9))
    a = rng.uniform(0, 2 * np.pi)
    w = np.clip(0.5 + (xx - 0.5) * np.cos(a) + (yy - 0.5) * np.sin(a), 0, 1)[..., None]
    canvas = c1 * (1 - w) + c2 * w
    for _ in range(rng.integers(0, 4)):
        bx, by, br = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.05, 0.2)
        blob = np.clip((br - np.sqrt((xx - bx) ** 2 + (yy - by) ** 2)) * size, 0, 1)[..., None]
        canvas = canvas * (1 - blob) + hsv_to_rgb(rng.uniform(), 0.4, rng.uniform(0.2, 0.9)) * blob
    return canvas


def to_uint8(canvas: np.ndarray, rng: np.random.Generator, noise: float = 0.03) -> np.ndarray:
    """Add sensor noise and quantise to uint8 (H, W, 3)."""
    noisy = canvas + rng.normal(0, noise, canvas.shape)
    return np.clip(noisy * 255 + 0.5, 0, 255).astype(np.uint8)
