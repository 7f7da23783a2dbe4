"""Training throughput of a real trial's loop (our FFCV loader + model step) vs the same steps on tensors in memory.

The loop is the one a trial runs: `engine.loops.train_epoch` over `shared_loader` on the embedded
pre-training data (synthnet, 32 px, random resized crops of scale (0.5, 1) + flip, batch 64), with
the trial's thread settings (`engine.threads.set_trial_threads`) and model preparation
(`engine.speed.Speed.prepare`: channels-last). The alternative is the same `train_epoch` over the
same batches already decoded, augmented and normalised in memory: what the model alone can do.
Their ratio is the share of the model's speed the data pipeline keeps (1.0 = the loader costs
nothing). Epochs alternate between the two after a warm-up of each, and medians are compared.

On a CUDA machine it also reports the GPU path: batches moved by FFCV's `ToDevice`, normalised on
the GPU, bf16 autocast and channels-last; on a CPU machine those lines say they were skipped.

    python benchmarks/pipeline_efficiency.py [--archs resnet18,mobilenet_v3_small] [--cpus N] [--rounds 3] [--quick]
"""
from __future__ import annotations

import argparse
import os
from types import SimpleNamespace

from common import headline, median, side_by_side

GOAL = 0.90


def measure(arch: str, loader, num_classes: int, device, precision: str, rounds: int) -> tuple[float, float]:
    """(median images/s through the loader, median images/s over the same batches in memory)."""
    import torch

    from engine.archs import build_model
    from engine.loops import pretrain_optimizer, train_epoch
    from engine.speed import Speed

    torch.manual_seed(0)
    model = Speed().prepare(build_model(arch, num_classes, 32, bn_momentum=0.1), device)
    recipe = SimpleNamespace(optimizer="sgd", lr=0.2, batch_size=64, momentum=0.9, weight_decay=1e-4,
                             epochs=rounds * 2 + 2, schedule="cosine")
    optimizer, scheduler = pretrain_optimizer(model, recipe, len(loader))
    in_memory = [(x.clone(), y.clone()) for x, y in loader]  # FFCV reuses its buffers: copy them

    def epoch(batches) -> float:
        return train_epoch(model, batches, optimizer, scheduler, None, device, precision)["images_per_s"]

    epoch(loader), epoch(in_memory)  # warm-up: first-touch allocations, oneDNN/cuDNN kernel choice
    piped, memory = [], []
    for _ in range(rounds):
        piped.append(epoch(loader))
        memory.append(epoch(in_memory))
    return median(piped), median(memory)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--archs", default="resnet18,mobilenet_v3_small", help="comma-separated (default: the embedded ones)")
    p.add_argument("--cpus", type=int, default=os.cpu_count() or 1, help="the trial's CPUs (default: every core)")
    p.add_argument("--rounds", type=int, default=3, help="timed epochs of each, alternating (default 3)")
    p.add_argument("--quick", action="store_true", help="tiny inputs: checks that the benchmark runs")
    args = p.parse_args(argv)
    options = {"num_classes": 50, "images_per_class": 40, "val_per_class": 10}  # half the embedded default source
    if args.quick:
        args.rounds, options = 1, {"num_classes": 10, "images_per_class": 20, "val_per_class": 2}

    import torch

    from datasets import get_source
    from datasets.storage.loaders import shared_loader
    from engine.threads import set_trial_threads

    set_trial_threads(args.cpus)
    src = get_source("synthnet", **options)
    beton = src.beton("train", 32, num_workers=os.cpu_count() or 1)
    archs = [a for a in args.archs.split(",") if a]
    print(f"pipeline_efficiency: {len(src.labels('train'))} synthnet images at 32 px, batch 64, {args.cpus} CPUs "
          f"(torch, numba and FFCV threads), {args.rounds} alternating epochs", flush=True)

    cpu = torch.device("cpu")
    loader = shared_loader(beton, 64, 32, args.cpus, train=True, seed=0, crop_scale=0.5)
    ratios = []
    for arch in archs:
        piped, memory = measure(arch, loader, src.num_classes, cpu, "fp32", args.rounds)
        ratios.append(side_by_side(f"{arch} cpu fp32", piped, memory, "img/s", "loader", "in memory"))
    if torch.cuda.is_available():
        gpu = torch.device("cuda")
        gpu_loader = shared_loader(beton, 64, 32, args.cpus, train=True, seed=0, crop_scale=0.5, device="cuda")
        for arch in archs:
            for precision in ("fp32", "bf16"):
                piped, memory = measure(arch, gpu_loader, src.num_classes, gpu, precision, args.rounds)
                side_by_side(f"{arch} cuda {precision} channels-last", piped, memory, "img/s", "loader", "in memory")
    else:
        print("  cuda: skipped (no CUDA device here): the GPU path (ToDevice, GPU normalisation, bf16, channels-last) "
              "is measured on a GPU machine", flush=True)
    headline("pipeline_efficiency", min(ratios), GOAL)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
