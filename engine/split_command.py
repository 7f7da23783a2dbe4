"""`python sweeps/support_shift.py split`: split a user's own shift (two folders of images) into its
in-support and out-of-support parts with a fixed encoder the user names.

The engine writes the encoder's features of both folders (`<out>.features.npz`, with thumbnails
and the file lists); `analysis.support_split` reads that file and writes the split,
`<out>.split.csv`: one row per shifted image (`file`, density ratio `ratio`, calibrated
`probability` of being shifted, `out_of_support`).
"""
from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np

from analysis.cli_parser import OneLineParser, at_least
from datasets.readers.image_files import IMAGE_EXTENSIONS  # the images a sweep on the split reads, no more
from datasets.storage.atomic import atomic_write


class FolderImages:
    """Every image file under a folder (recursively, sorted), as (uint8 H x W x 3 at `resolution`, 0)."""

    def __init__(self, root: Path, resolution: int):
        self.root, self.resolution = root, resolution
        self.files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                            if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        from PIL import Image

        with Image.open(self.root / self.files[i]) as img:
            return np.asarray(img.convert("RGB").resize((self.resolution, self.resolution))), 0


def features_beside(split: str | Path) -> Path:
    """The features file that the split command wrote beside `split` (`PREFIX.split.csv` -> `PREFIX.features.npz`)."""
    split = Path(split)
    return split.with_name(f"{split.name.removesuffix('.csv').removesuffix('.split')}.features.npz")


def _folder(text: str) -> Path:
    path = Path(text).expanduser()
    if not path.is_dir():
        raise ValueError(f"{text}: no such directory")
    return path


def parser() -> OneLineParser:
    p = OneLineParser(prog="support_shift.py split", description=(
        "Split a shift (two folders of images, any layout below them) into in-support and out-of-support parts: "
        "features from a fixed encoder, a reference-vs-shifted domain classifier (10-fold out-of-fold "
        "probabilities, one temperature), density ratio r; r >= 1/epsilon is out-of-support."))
    p.add_argument("--reference", required=True, metavar="DIR", help="folder of the reference images")
    p.add_argument("--shifted", required=True, metavar="DIR", help="folder of the shifted images")
    p.add_argument("--encoder", required=True, metavar="ARCH", help="torchvision architecture of the weights")
    p.add_argument("--weights", required=True, metavar="PATH", help="its state dict (loaded with weights_only=True)")
    p.add_argument("--resolution", type=at_least(16), default=224, metavar="PX", help="input size")
    p.add_argument("--epsilon", type=float, default=0.1, help="out-of-support when r >= 1/epsilon")
    p.add_argument("--out", default="shift", metavar="PREFIX", help="writes PREFIX.features.npz and PREFIX.split.csv")
    return p


def embed_images(model, images: FolderImages, batch: int = 64) -> np.ndarray:
    import torch

    from datasets.storage.loaders import IMAGENET_MEAN, IMAGENET_STD

    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32).view(1, 3, 1, 1)
    out = []
    with torch.inference_mode():
        for start in range(0, len(images), batch):
            x = np.stack([images[i][0] for i in range(start, min(start + batch, len(images)))])
            x = (torch.from_numpy(x).permute(0, 3, 1, 2).float() - mean) / std
            out.append(model(x).float().numpy())
    return np.concatenate(out).astype(np.float32)


def split_main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    if not 0 < args.epsilon < 1:
        print(f"error: --epsilon {args.epsilon:g} must be in (0, 1); the paper uses 0.1", file=sys.stderr)
        return 2
    try:
        from analysis.support_split import split_shift
        from engine.archs import check_arch
        from engine.features import THUMBNAIL, load_encoder
        from engine.weights import load_state_dict

        reference, shifted = _folder(args.reference), _folder(args.shifted)
        check_arch(args.encoder, args.resolution)
        ref_images, shift_images = FolderImages(reference, args.resolution), FolderImages(shifted, args.resolution)
        for name, images in (("--reference", ref_images), ("--shifted", shift_images)):
            if len(images) < 10:
                raise ValueError(f"{name} {images.root}: {len(images)} images; the 10-fold split needs at least 10")
        model = load_encoder(args.encoder, load_state_dict(args.weights), args.resolution)
        thumbs = FolderImages(shifted, THUMBNAIL)
        arrays = {"reference": embed_images(model, ref_images), "shifted": embed_images(model, shift_images),
                  "thumbnails": np.stack([thumbs[i][0] for i in range(len(thumbs))]),
                  "meta": np.asarray(json.dumps({"encoder": args.encoder, "resolution": args.resolution,
                                                 "reference": str(reference), "shifted": str(shifted),
                                                 "reference_files": ref_images.files,
                                                 "shifted_files": shift_images.files}))}
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)
        atomic_write(features_beside(f"{out}.split.csv"), buffer.getvalue())
        split = split_shift(arrays["reference"], arrays["shifted"], epsilon=args.epsilon)
    except (ValueError, OSError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    import pandas as pd

    table = pd.DataFrame({"file": shift_images.files, "ratio": split.ratio, "probability": split.probability,
                          "out_of_support": split.out_of_support})
    atomic_write(Path(f"{out}.split.csv"), table.to_csv(index=False))
    print(f"{int(split.out_of_support.sum())} of {len(split.ratio)} shifted images are out-of-support "
          f"(r >= {1 / args.epsilon:g}; temperature {split.temperature:.2f}); wrote {out}.features.npz and "
          f"{out}.split.csv")
    return 0
