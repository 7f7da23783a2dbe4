"""The Tune trainable: one cell = pre-train (cached, checkpointed every epoch), then fine-tune.

Fine-tuning reports DESIGN.md's metrics to Tune after every epoch, with a checkpoint holding the
model, optimizer, scheduler, epoch and RNG state, so a restarted trial continues where it stopped.
Pre-training keeps its per-epoch state in the pre-trained cache, `<storage>/pretrained/<hash>/`,
so any trial that needs the same pre-trained model (same source, subset, arch, seed and recipe)
resumes or reuses it, whichever experiment it runs in.
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from filelock import FileLock
from ray import tune

from datasets import get_source
from datasets.storage.loaders import make_loader, shared_loader
from datasets.interventions import build_subset, domain_rows
from engine.archs import build_model, replace_head
from engine.loops import evaluate, finetune_optimizer, pretrain_optimizer, train_epoch
from engine.provenance import package_versions
from engine.spec import pretrain_id

FAULT_ENV = "SWEEPS_FAULT_AT"  # testing hook: "finetune:2" raises once before fine-tuning epoch 2


@dataclass(frozen=True)
class RunContext:
    """What a trial needs that does not change its result (never part of the cell hash)."""

    storage: str              # the storage root: holds `pretrained/` and the sweep directories
    data_root: str | None
    cache_dir: str            # `.beton` cache (SWEEPS_CACHE)
    git_sha: str


def _resources() -> tuple[int, int]:
    """(CPUs, GPUs) Tune gave this trial."""
    try:
        required = tune.get_context().get_trial_resources().required_resources
    except Exception:  # called outside Tune (tests of the loops)
        return 1, 0
    return max(1, int(required.get("CPU", 1))), int(np.ceil(required.get("GPU", 0)))


def _set_threads(cpus: int) -> None:
    # torch, numba (FFCV's JIT) and BLAS all default to every core: trials would fight.
    torch.set_num_threads(cpus)
    try:
        import numba

        numba.set_num_threads(min(cpus, numba.config.NUMBA_NUM_THREADS))
    except (ImportError, ValueError):
        pass


def _atomic_save(obj, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _maybe_fault(phase: str, epoch: int, marker_dir: Path) -> None:
    spec = os.environ.get(FAULT_ENV, "")
    if spec != f"{phase}:{epoch}":
        return
    marker = marker_dir / f".fault-{phase}-{epoch}"
    if marker.exists():
        return
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.touch()
    raise RuntimeError(f"injected fault before {phase} epoch {epoch} ({FAULT_ENV}={spec})")


def pretrain(config: dict, context: RunContext, cpus: int, device: torch.device) -> tuple[dict, dict]:
    """Pre-trained weights for this cell (from the cache, or trained now) and their description."""
    cache = Path(context.storage) / "pretrained" / pretrain_id(config)
    cache.mkdir(parents=True, exist_ok=True)
    model_file, meta_file = cache / "model.pt", cache / "meta.json"
    with FileLock(str(cache / ".lock")):  # one trial trains it; the others wait, then reuse it
        if not model_file.exists():
            _pretrain_into(cache, config, context, cpus, device)
    return torch.load(model_file, map_location="cpu", weights_only=True), json.loads(meta_file.read_text())


def _pretrain_into(cache: Path, config: dict, context: RunContext, cpus: int, device: torch.device) -> None:
    src = get_source(config["source"], context.data_root, **json.loads(config["source_options"]))
    params = json.loads(config["intervention_params"])
    subset = build_subset(src, config["intervention"], config["value"], seed=config["seed"], **params)
    res, seed = config["pretrain_resolution"], config["seed"]
    train_file, val_file = src.beton("train", res, cpus), src.beton(src.holdout_split, res, cpus)
    label_map = torch.as_tensor(subset.label_map, device=device)
    val_labels = subset.label_map[src.labels(src.holdout_split)]
    train_loader = make_loader(train_file, config["pretrain_batch_size"], res, cpus, train=True,
                               indices=subset.indices, seed=seed, device=str(device), augment=True)
    val_rows = np.flatnonzero(val_labels >= 0)
    if subset.description.get("domain") is not None:  # pre-trained on one domain: evaluate on that domain
        val_rows = np.intersect1d(val_rows, domain_rows(src, src.holdout_split, subset.description["domain"]))
    val_loader = make_loader(val_file, 256, res, cpus, train=False, indices=val_rows, device=str(device))

    torch.manual_seed(seed)
    model = build_model(config["arch"], subset.num_classes, res).to(device)
    optimizer, scheduler = pretrain_optimizer(model, config, len(train_loader))
    state_file, start = cache / "state.pt", 0
    if state_file.exists():  # a killed trial left its last finished epoch here
        state = torch.load(state_file, map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        start = state["epoch"]

    for epoch in range(start, config["pretrain_epochs"]):
        _maybe_fault("pretrain", epoch + 1, cache)
        train_loader.next_epoch = epoch  # FFCV's shuffle is seeded by (seed, epoch): resumes the same order
        stats = train_epoch(model, train_loader, optimizer, scheduler, label_map, device)
        metrics = evaluate(model, {"pretrain_val": val_loader}, device, subset.label_map)
        _atomic_save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                      "scheduler": scheduler.state_dict(), "rng": torch.get_rng_state(), "epoch": epoch + 1},
                     state_file)
        tune.report({"phase": "pretrain", "epoch": epoch + 1, "pretrain_loss": stats["train_loss"],
                     "images_per_s": stats["images_per_s"], **metrics})

    meta = {"pretrain_id": pretrain_id(config), "subset": subset.description, "holdout_images": int(len(val_rows)),
            "source": src.describe(), "epochs": config["pretrain_epochs"],
            "data_files": {s: Path(f).name for s, f in (("train", train_file), ("val", val_file))}}
    (cache / "meta.json").write_text(json.dumps(meta, indent=1, default=str))
    _atomic_save({k: v.cpu() for k, v in model.state_dict().items()}, cache / "model.pt")
    state_file.unlink(missing_ok=True)


def _read_record(checkpoint) -> dict:
    with checkpoint.filesystem.open_input_stream(f"{checkpoint.path}/cell.json") as f:
        return json.loads(f.read())


def _resume_point() -> tuple[dict | None, dict | None]:
    """(state, record) of this trial's newest complete fine-tuning checkpoint, or (None, None).

    Tune restores a trial from the checkpoint its last experiment snapshot knew. A driver killed
    between a report and the next snapshot leaves a newer checkpoint in the trial directory that
    Tune does not know: taking it means that epoch is not trained again (and a finished cell is
    not re-run). A checkpoint cut short by the kill fails to load and is skipped.
    """
    import pyarrow.fs

    known = tune.get_checkpoint()
    candidates = [known] if known else []
    try:
        storage = tune.get_context().get_storage()  # Ray developer API: the trial's storage paths
        infos = storage.storage_filesystem.get_file_info(
            pyarrow.fs.FileSelector(storage.trial_fs_path, allow_not_found=True))
        candidates += [tune.Checkpoint(i.path, storage.storage_filesystem) for i in infos
                       if i.type == pyarrow.fs.FileType.Directory and i.base_name.startswith("checkpoint_")]
    except Exception:  # noqa: BLE001 - outside a Tune session: Tune's own view is all there is
        pass
    ranked = []
    for checkpoint in candidates:
        try:
            ranked.append((len(_read_record(checkpoint)["history"]), checkpoint))
        except Exception:  # noqa: BLE001 - half-written when its run was killed
            continue
    for epochs, checkpoint in sorted(ranked, key=lambda r: -r[0]):
        try:
            with checkpoint.as_directory() as directory:
                state = torch.load(Path(directory) / "state.pt", map_location="cpu", weights_only=True)
                record = json.loads((Path(directory) / "cell.json").read_text())
        except Exception:  # noqa: BLE001
            continue
        if state["epoch"] == epochs:
            return state, record
    return None, None


def _report_missing_rows(history: list[dict]) -> None:
    """Report again the fine-tuning rows a killed driver did not write to the trial's result.json."""
    storage = tune.get_context().get_storage()
    try:
        with storage.storage_filesystem.open_input_stream(f"{storage.trial_fs_path}/result.json") as f:
            lines = f.read().decode().splitlines()
    except (FileNotFoundError, OSError):
        lines = []
    written = {r.get("epoch") for r in map(json.loads, filter(str.strip, lines)) if r.get("phase") == "finetune"}
    for row in history:
        if row["epoch"] not in written:
            tune.report(row)


def train_cell(config: dict, context: RunContext) -> None:
    """Tune function trainable for one cell."""
    os.environ["SWEEPS_CACHE"] = context.cache_dir
    state, saved_record = _resume_point()
    if saved_record is not None:
        _report_missing_rows(saved_record["history"])
        if state["epoch"] >= config["finetune_epochs"]:
            return  # finished before the driver died: nothing to redo
    cpus, gpus = _resources()
    _set_threads(cpus)
    device = torch.device("cuda" if gpus and torch.cuda.is_available() else "cpu")

    target = get_source(config["target"], context.data_root, **json.loads(config["target_options"]))
    res, seed = config["finetune_resolution"], config["seed"]
    torch.manual_seed(seed)
    pretrained_meta = saved_record["pretrained"] if saved_record else None
    if config["intervention"] != "scratch" and state is None:  # a resumed cell has its weights in `state`
        weights, pretrained_meta = pretrain(config, context, cpus, device)
        model = build_model(config["arch"], pretrained_meta["subset"]["num_classes"], res)
        model.load_state_dict(weights)
        torch.manual_seed(seed)
        replace_head(model, config["arch"], target.num_classes)
    else:
        model = build_model(config["arch"], target.num_classes, res)
    model = model.to(device).to(memory_format=torch.channels_last)

    files = {split: target.beton(split, res, cpus) for split in target.splits}
    train_loader = shared_loader(files["train"], config["finetune_batch_size"], res, cpus, train=True, seed=seed,
                                 device=str(device))
    eval_loaders = {prefix: shared_loader(files[split], 256, res, cpus, train=False, device=str(device))
                    for prefix, split in target.eval_splits.items()}
    optimizer, scheduler = finetune_optimizer(model, config, len(train_loader))

    start = 0
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        start = state["epoch"]

    record = {"config": config, "pretrained": pretrained_meta, "target": target.describe(),
              "provenance": {"git_sha": context.git_sha, "packages": package_versions(),
                             "data_files": {s: Path(f).name for s, f in files.items()}},
              "history": saved_record["history"] if saved_record else []}
    # the pre-training subset's size travels with every row, so reports can show it (0 for scratch)
    subset = (pretrained_meta or {}).get("subset", {})
    subset_size = {"subset_images": subset.get("num_images", 0), "subset_classes": subset.get("num_classes", 0)}
    for epoch in range(start, config["finetune_epochs"]):
        _maybe_fault("finetune", epoch + 1, Path(context.storage) / ".faults" / config["cell_id"])
        train_loader.next_epoch = epoch
        stats = train_epoch(model, train_loader, optimizer, scheduler, None, device)
        metrics = evaluate(model, eval_loaders, device)
        row = {"phase": "finetune", "epoch": epoch + 1, **stats, **metrics, **subset_size,
               "cell_id": config["cell_id"], "git_sha": context.git_sha}
        record["history"].append(row)
        with tempfile.TemporaryDirectory() as tmp:
            torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(), "rng": torch.get_rng_state(), "epoch": epoch + 1},
                       Path(tmp) / "state.pt")
            (Path(tmp) / "cell.json").write_text(json.dumps(record, indent=1, default=str))
            tune.report(row, checkpoint=tune.Checkpoint.from_directory(tmp))
