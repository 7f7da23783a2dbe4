"""Features of a natural shift from a fixed pre-trained encoder, written as a file for `analysis`.

The engine owns models and loaders, so it computes the features; `analysis.support_split` reads
the file and splits the shift into its in-support and out-of-support parts. The encoder is a
torchvision architecture with the user's weights (a state dict, loaded with `weights_only=True`),
its classification head replaced by the identity: the features are the penultimate activations.

`<name>.features.npz` holds `reference` (n_ref, d) and `shifted` (n_shift, d) float32 features,
`rows` (the shifted examples' rows in their split: a natural set pooled with others is some
rows), their labels, `thumbnails` (n_shift, 32, 32, 3 uint8: the shifted images, for the report's grid
of most in- and out-of-support examples), and `meta` (JSON): encoder, weights' SHA-256, the
source, the two splits and the target whose trials' predictions of the shifted split the split
is scored on.
"""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from datasets.storage.location import Location
from engine.archs import _set, build_model, get_arch, head_classes

THUMBNAIL = 32


def load_encoder(arch: str, state: dict, resolution: int) -> nn.Module:
    """`arch` with the weights `state` and its head replaced by the identity (penultimate features)."""
    model = build_model(arch, head_classes(state, arch), resolution)
    model.load_state_dict(state)
    _set(model, get_arch(arch).head, nn.Identity())
    return model.eval()


@torch.inference_mode()
def embed(model: nn.Module, beton: Path, resolution: int, cpus: int = 1) -> np.ndarray:
    """(n, d) float32 features of every image of a `.beton`, in file order."""
    from datasets.storage.loaders import make_loader

    loader = make_loader(beton, 128, resolution, cpus, train=False)
    return np.concatenate([model(images).float().numpy() for images, _ in loader]).astype(np.float32)


def thumbnails(src, split: str, rows: np.ndarray) -> np.ndarray:
    """(len(rows), 32, 32, 3) uint8 small copies of some of a split's images."""
    from PIL import Image

    images = src.images(split, THUMBNAIL)
    out = np.empty((len(rows), THUMBNAIL, THUMBNAIL, 3), dtype=np.uint8)
    for k, i in enumerate(rows):
        out[k] = np.asarray(Image.fromarray(images[int(i)][0]).convert("RGB").resize((THUMBNAIL, THUMBNAIL)))
    return out


def write_features(out: Path | Location, src, reference_split: str, shifted_split: str, arch: str, state: dict,
                   resolution: int, meta: dict, cpus: int = 1, rows: np.ndarray | None = None) -> Path:
    """Write `out` (`<name>.features.npz`): `src`'s `reference_split` vs `rows` of `shifted_split` (default all)."""
    torch.set_num_threads(max(1, cpus))
    model = load_encoder(arch, state, resolution)
    rows = np.arange(len(src.labels(shifted_split))) if rows is None else np.asarray(rows)
    arrays = {
        "reference": embed(model, src.beton(reference_split, resolution, cpus), resolution, cpus),
        "shifted": embed(model, src.beton(shifted_split, resolution, cpus), resolution, cpus)[rows],
        "rows": rows,
        "reference_labels": src.labels(reference_split), "shifted_labels": src.labels(shifted_split)[rows],
        "thumbnails": thumbnails(src, shifted_split, rows),
        "meta": np.asarray(json.dumps({"encoder": arch, "resolution": resolution, "reference_split": reference_split,
                                       "shifted_split": shifted_split, **meta})),
    }
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    Location.of(out).write_bytes(buffer.getvalue())  # atomic on a filesystem, one PUT on object storage
    return out


def write_natural_features(natural: dict[str, list[tuple[str, str, str | None]]], directory: Path | str, spec,
                           options) -> list[Location]:
    """For each target of `spec` named in `natural` ({target: [(reference split, shifted split, domain or
    None), ...]}), the features of the reference split and of the shifted split's rows of that domain (all
    rows for None) from the encoder of the target's first `full` cell (its architecture and pre-trained
    weights: the pre-trained cache, or the user's `--weights`), written as
    `<sweep>/natural/<target>[-<domain>].features.npz`. Targets without a `full` cell are skipped."""
    from datasets import get_source
    from engine.pretrain import cache_dir
    from engine.runner import storage_root
    from engine.spec import cells
    from engine.inputs import PretrainInputs
    from engine.weights import load_state_dict

    written = []
    for config in cells(spec):
        if config["target"] not in natural or config["intervention"] != "full":
            continue
        if any(p.name.startswith(f"{config['target']}.") or p.name.startswith(f"{config['target']}-")
               for p in written):
            continue
        inputs = PretrainInputs.from_config(config)
        given = next((w for w in spec.weights if w.sha256 == inputs.weights), None)
        model_file = Location.of(given.path) if given else cache_dir(storage_root(options), inputs) / "model.pt"
        if not model_file.exists():
            raise FileNotFoundError(f"{model_file}: the encoder of {config['target']}'s natural shift is missing; "
                                    "run the sweep's full cells first")
        state = load_state_dict(model_file.path) if given else model_file.load_torch()
        target = next(t for t in spec.all_targets() if t.name == config["target"])
        src = get_source(target.registered, options.data_root, **target.options)
        for reference, shifted, domain in natural[config["target"]]:
            rows = None if domain is None else np.flatnonzero(src.domains(shifted) == domain)
            name = config["target"] + (f"-{domain}" if domain else "")
            out = Location.of(directory) / "natural" / f"{name}.features.npz"
            print(f"features of {name}'s natural shift ({reference} vs {shifted}, {config['arch']}) -> {out}")
            written.append(write_features(out, src, reference, shifted, config["arch"], state,
                                          config["finetune_resolution"],
                                          {"target": config["target"], "name": name,
                                           "shift_name": domain or f"{config['target']} {shifted}",
                                           "weights": inputs.weights or inputs.key}, rows=rows))
    return written
