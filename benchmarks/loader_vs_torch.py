"""Images/s of our FFCV training pipeline vs torchvision's ImageFolder + DataLoader, side by side.

Both read the same photo-like JPEGs at ImageNet-like sizes (about 500 x 375) and produce the same
batches: the reference pre-training augmentation (RandomResizedCrop to 224 px with scale
(0.08, 1), horizontal flip) and ImageNet normalisation, as float32 NCHW tensors, with the same
number of workers (this machine's cores) and batch size.
- ours: `datasets.storage.loaders.make_loader` over the `.beton` that `folder` (what `--data-root`
  sweeps and `python -m datasets prepare` use) writes from those files, stored the default way
  (half of the images JPEG at quality 90, half raw pixels, as FFCV's ImageNet example); one jitted
  pass per image decodes, crops, resizes, flips and normalises (`datasets.storage.decoders`). The
  same loader over a file storing every image as JPEG (`prepare --jpeg-fraction 1`) is reported
  beside it, not in the headline;
- torchvision: `ImageFolder` (PIL decode) + `RandomResizedCrop` + `RandomHorizontalFlip` +
  `ToTensor` + `Normalize` in a `DataLoader` (persistent workers).
The first epoch of each is reported apart (FFCV compiles its pipeline, the DataLoader starts its
workers); the headline compares the steady epochs after it. Converting to `.beton` is timed by
`beton_write.py`, not here.

    python benchmarks/loader_vs_torch.py [--images 2048] [--batch-size 64] [--workers N] [--workdir DIR] [--quick]
"""
from __future__ import annotations

import argparse
import os

from common import headline, jpeg_tree, median, side_by_side, stopwatch

GOAL = 3.0


def epoch_rate(loader) -> float:
    """Images/s of one pass over `loader` (every batch materialised, nothing else done with it)."""
    seen = 0
    with stopwatch() as elapsed:
        for images, _ in loader:
            seen += len(images)
    return seen / elapsed()


def ours(beton, args):
    from datasets.storage.loaders import make_loader

    return make_loader(beton, args.batch_size, args.resolution, args.workers, train=True, seed=0, crop_scale=0.08)


def torchvision_pipeline(folder, args):
    import torch
    from torchvision import datasets as tv_datasets, transforms

    from datasets.storage.loaders import IMAGENET_MEAN, IMAGENET_STD

    transform = transforms.Compose([
        transforms.RandomResizedCrop(args.resolution, scale=(0.08, 1.0)),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize((IMAGENET_MEAN / 255).tolist(), (IMAGENET_STD / 255).tolist()),
    ])
    dataset = tv_datasets.ImageFolder(str(folder), transform=transform)
    return torch.utils.data.DataLoader(dataset, batch_size=args.batch_size, shuffle=True, drop_last=True,
                                       num_workers=args.workers, persistent_workers=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=2048, help="training images (default 2048)")
    p.add_argument("--classes", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--resolution", type=int, default=224)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="loader workers (default: every core)")
    p.add_argument("--epochs", type=int, default=3, help="timed epochs of each after the first, alternating (default 3)")
    p.add_argument("--workdir", help="keep the generated JPEGs here and reuse them (default: a temporary folder)")
    p.add_argument("--quick", action="store_true", help="tiny inputs: checks that the benchmark runs")
    args = p.parse_args(argv)
    if args.quick:
        args.images, args.classes, args.batch_size, args.resolution, args.epochs = 96, 4, 16, 64, 1

    from datasets import get_source

    root = jpeg_tree(args.workdir, args.images, args.classes)
    src = get_source("folder", path=str(root))
    src.jpeg_fraction = src.stored_jpeg_fraction  # the default storage, not whichever file a cache holds
    beton = src.beton("train", num_workers=os.cpu_count() or 1)
    jpeg_only = get_source("folder", path=str(root))
    jpeg_only.jpeg_fraction = 1.0
    jpeg_beton = jpeg_only.beton("train", num_workers=os.cpu_count() or 1)
    print(f"loader_vs_torch: {args.images} JPEGs at ImageNet-like sizes, {args.resolution}-px random resized crops, "
          f"batch {args.batch_size}, {args.workers} workers on {os.cpu_count()} cores; ffcv reads {beton.name} "
          f"({src.stored_jpeg_fraction:.0%} of the images as JPEG), ffcv-jpeg {jpeg_beton.name} (all JPEG)", flush=True)

    ffcv, ffcv_jpeg = ours(beton, args), ours(jpeg_beton, args)
    torchvision = torchvision_pipeline(root / "train", args)
    first_torch = epoch_rate(torchvision)
    side_by_side("first epoch (FFCV JIT / worker start)", epoch_rate(ffcv), first_torch, "img/s", "ffcv", "torchvision")
    side_by_side("first epoch (FFCV JIT / worker start)", epoch_rate(ffcv_jpeg), first_torch, "img/s", "ffcv-jpeg",
                 "torchvision")
    rates_ours, rates_jpeg, rates_torch = [], [], []
    for i in range(args.epochs):  # alternating, so all see the same machine
        rates_ours.append(epoch_rate(ffcv))
        rates_torch.append(epoch_rate(torchvision))
        rates_jpeg.append(epoch_rate(ffcv_jpeg))
        side_by_side(f"epoch {i + 2}", rates_ours[-1], rates_torch[-1], "img/s", "ffcv", "torchvision")
        side_by_side(f"epoch {i + 2}", rates_jpeg[-1], rates_torch[-1], "img/s", "ffcv-jpeg", "torchvision")
    print(f"  every image stored as JPEG (prepare --jpeg-fraction 1): {median(rates_jpeg) / median(rates_torch):.3f} "
          "x torchvision", flush=True)
    ratio = median(rates_ours) / median(rates_torch)
    headline("loader_vs_torch", ratio, GOAL)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
