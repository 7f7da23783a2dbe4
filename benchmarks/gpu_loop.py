"""Our training and evaluation loops on in-memory tensors: fp32 vs bf16/fp16 autocast, channels-last, torch.compile.

Uses only `engine.loops`, `engine.archs` and `engine.speed` (no Ray, no FFCV: it checks), so it runs
on any machine with torch. Batches are random images already on the device, normalised as our
loaders deliver them. Each variant runs `engine.loops.train_epoch` over the same batches; the
evaluation line runs `engine.loops.predict` (inference mode, `eval_batch_size`). The headline
compares our loop with a bare step (forward, loss, backward, optimizer step, nothing else) in
the fastest variant: what the engine's loop costs on top of the model.

On a CPU machine (or with --quick) what needs CUDA (fp16 with a GradScaler; torch.compile, unless
--compile) is skipped with a printed line, and the sizes are CPU-sized.

    python benchmarks/gpu_loop.py [--arch resnet50] [--resolution 224] [--batch-size 128] [--steps 30] [--compile] [--quick]
"""
from __future__ import annotations

import argparse
import sys
from types import SimpleNamespace

from common import ROOT, headline, median, side_by_side, stopwatch  # noqa: F401 (ROOT: puts the project on sys.path)

GOAL = 0.95


def make_batches(n: int, batch: int, res: int, classes: int, device, channels_last: bool) -> list:
    import torch

    g = torch.Generator().manual_seed(0)
    out = []
    for _ in range(n):
        x = torch.randint(0, 256, (batch, 3, res, res), generator=g, dtype=torch.uint8)
        x = ((x.float() - 117.0) / 57.0).to(device)  # what Normalize yields: float32, zero-mean-ish
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        out.append((x, torch.randint(0, classes, (batch,), generator=g).to(device)))
    return out


def build(arch: str, classes: int, res: int, device, channels_last: bool, compile_model: bool):
    import torch

    from engine.archs import build_model
    from engine.loops import finetune_optimizer

    torch.manual_seed(0)
    model = build_model(arch, classes, res).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if compile_model:
        model.compile()
    optimizer, scheduler = finetune_optimizer(model, SimpleNamespace(optimizer="adam", lr=1e-4, weight_decay=0.0), 1)
    return model, optimizer, scheduler


def loop_rates(variants: dict, arch, classes, res, device, repeats=3) -> dict[str, float]:
    """Median images/s of `train_epoch` per variant {name: (batches, precision, channels_last, compile)}.

    Every round runs one pass of each variant in turn (after a warm-up round), so a busy moment of
    the machine hits all of them alike.
    """
    from engine.loops import train_epoch

    runs = {}
    for name, (batches, precision, channels_last, compile_model) in variants.items():
        model, optimizer, scheduler = build(arch, classes, res, device, channels_last, compile_model)
        runs[name] = (lambda m=model, o=optimizer, s=scheduler, b=batches, p=precision:
                      train_epoch(m, b, o, s, None, device, p)["images_per_s"])
    rates = {name: [] for name in runs}
    for round_ in range(repeats + 1):
        for name, run in runs.items():
            rate = run()
            if round_:
                rates[name].append(rate)
    return {name: median(r) for name, r in rates.items()}


def efficiency(arch, batches, classes, res, device, precision, repeats=5) -> tuple[float, float]:
    """Median images/s of `train_epoch` and of the plainest step a script can take (no scheduler, scaler or
    loss bookkeeping), alternating passes over the same batches with one model, after a warm-up of each."""
    import torch

    from engine.loops import AUTOCAST_DTYPES, train_epoch

    model, optimizer, scheduler = build(arch, classes, res, device, True, False)
    dtype = AUTOCAST_DTYPES[precision]

    def bare() -> float:
        model.train()
        with stopwatch() as elapsed:
            for x, y in batches:
                with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                    loss = torch.nn.functional.cross_entropy(model(x), y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            if device.type == "cuda":
                torch.cuda.synchronize()
        return sum(len(y) for _, y in batches) / elapsed()

    def ours() -> float:
        return train_epoch(model, batches, optimizer, scheduler, None, device, precision)["images_per_s"]

    ours(), bare()
    pairs = [(ours(), bare()) for _ in range(repeats)]
    return median(p[0] for p in pairs), median(p[1] for p in pairs)


def eval_rate(arch, classes, res, device, precision, batch, steps) -> float:
    from engine.loops import eval_batch_size, predict

    model, _, _ = build(arch, classes, res, device, True, False)
    batches = make_batches(max(2, steps // 2), eval_batch_size(batch), res, classes, device, True)
    predict(model, batches[:1], device, precision)
    with stopwatch() as elapsed:
        predict(model, batches, device, precision)
    return sum(len(y) for _, y in batches) / elapsed()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", help="default: resnet50 on a GPU, resnet18 on CPUs")
    p.add_argument("--resolution", type=int, help="default: 224 on a GPU, 32 on CPUs")
    p.add_argument("--batch-size", type=int, help="default: 128 on a GPU, 64 on CPUs")
    p.add_argument("--steps", type=int, help="batches per timed pass (default: 30 on a GPU, 8 on CPUs)")
    p.add_argument("--compile", action="store_true", help="also time torch.compile on CPUs (minutes of compilation)")
    p.add_argument("--quick", action="store_true", help="tiny inputs: checks that the benchmark runs")
    args = p.parse_args(argv)

    import torch

    from engine.loops import check_precision, eval_batch_size
    from engine.speed import Speed

    on_gpu = torch.cuda.is_available()
    device = torch.device("cuda" if on_gpu else "cpu")
    arch = args.arch or ("resnet50" if on_gpu else "resnet18")
    res = args.resolution or (224 if on_gpu else 32)  # CPUs: the embedded default's resolution
    batch = args.batch_size or (128 if on_gpu else 64)
    steps = args.steps or (30 if on_gpu else 8)
    if args.quick:
        res, batch, steps = 32, 16, 2
    classes = 100
    Speed().apply(device)  # cudnn.benchmark and TF32 on a GPU, as trials run
    name = torch.cuda.get_device_name(device) if on_gpu else f"CPU ({torch.get_num_threads()} threads)"
    print(f"gpu_loop: {arch} at {res} px, batch {batch}, {steps} steps per pass on {name}", flush=True)

    contiguous = make_batches(steps, batch, res, classes, device, channels_last=False)
    last = make_batches(steps, batch, res, classes, device, channels_last=True)
    variants = {"fp32": (contiguous, "fp32", False, False), "fp32 channels-last": (last, "fp32", True, False),
                "bf16 autocast channels-last": (last, "bf16", True, False)}
    if on_gpu:
        check_precision("fp16", device)
        variants["fp16 autocast + GradScaler channels-last"] = (last, "fp16", True, False)
    if on_gpu or args.compile:
        variants["bf16 channels-last + torch.compile"] = (last, "bf16", True, True)
    rates = loop_rates(variants, arch, classes, res, device)
    print(f"  fp32 (NCHW): {rates['fp32']:,.1f} img/s", flush=True)
    for label, rate in list(rates.items())[1:]:
        side_by_side(label, rate, rates["fp32"], "img/s", "this", "fp32 NCHW")
    if not on_gpu:
        print("  fp16 + GradScaler: skipped (needs CUDA; CPU trials refuse fp16)", flush=True)
    if not (on_gpu or args.compile):
        print("  torch.compile: skipped (needs CUDA to pay off; --compile times it on CPUs, minutes of compilation)",
              flush=True)
    # the efficiency line compares like with like: a bare fp16 step would skip the GradScaler ours must run
    best = max(("fp32 channels-last", "bf16 autocast channels-last"), key=rates.get)
    precision = "bf16" if "bf16" in best else "fp32"
    print(f"  evaluation (predict, inference mode, {precision}, batch {eval_batch_size(batch)}): "
          f"{eval_rate(arch, classes, res, device, precision, batch, steps):,.1f} img/s", flush=True)
    ours, bare = efficiency(arch, last, classes, res, device, precision)
    ratio = side_by_side(f"loop efficiency ({best})", ours, bare, "img/s", "train_epoch", "bare step")
    leaked = sorted({m.split(".")[0] for m in sys.modules} & {"ray", "ffcv"})
    print(f"  imported ray or ffcv: {', '.join(leaked) if leaked else 'neither'}", flush=True)
    headline("gpu_loop", ratio, GOAL)
    return 0 if not leaked else 1


if __name__ == "__main__":
    raise SystemExit(main())
