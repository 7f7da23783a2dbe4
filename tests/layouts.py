"""Tiny datasets in each real on-disk layout, with real JPEG files, for tests.

Every writer takes the data root (the folder holding the datasets, as `--data-root`), writes its
dataset's own sub-folder and returns it. Images are flat colours (one per class, so a round trip
through a `.beton` can be checked by pixel) with a little noise, `size` x `size * 3 // 4` pixels.
"""
from __future__ import annotations

import colorsys
from pathlib import Path

import numpy as np

WNIDS = ["n01440764", "n01443537", "n01484850", "n01491361"]  # tench, goldfish, great white shark, tiger shark


def class_color(label: int) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb((label * 0.27) % 1.0, 0.8, 0.9)
    return int(r * 255), int(g * 255), int(b * 255)


def write_jpeg(path: Path, label: int, size: int = 40, seed: int = 0) -> Path:
    from PIL import Image

    rng = np.random.default_rng(seed)
    pixels = np.full((size * 3 // 4, size, 3), class_color(label), dtype=np.float64) + rng.normal(0, 4, (size * 3 // 4, size, 3))
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, quality=95)
    return path


def add_corrupt_images(folder: Path, ext: str = ".JPEG") -> list[Path]:
    """A truncated JPEG, a text file and an empty file, all named like images, in `folder`."""
    good = write_jpeg(folder / f"zz_source{ext}", 0, size=64)
    truncated = folder / f"zz_truncated{ext}"
    truncated.write_bytes(good.read_bytes()[:300])
    good.unlink()
    text = folder / f"zz_text{ext}"
    text.write_text("this is not an image\n")
    empty = folder / f"zz_empty{ext}"
    empty.write_bytes(b"")
    return [truncated, text, empty]


def write_imagenet(root: Path, wnids=tuple(WNIDS[:3]), train_per_class: int = 4, val_per_class: int = 2,
                   size: int = 40) -> Path:
    """`<root>/imagenet/{train,val}/<wnid>/<wnid>_<n>.JPEG`, as ILSVRC-2012 with val re-organised."""
    base = Path(root) / "imagenet"
    for label, wnid in enumerate(wnids):
        for n in range(train_per_class):
            write_jpeg(base / "train" / wnid / f"{wnid}_{n}.JPEG", label, size, seed=label * 100 + n)
        for n in range(val_per_class):
            write_jpeg(base / "val" / wnid / f"ILSVRC2012_val_{label:04d}{n:04d}.JPEG", label, size, seed=label * 100 + 50 + n)
    return base


def write_folder(root: Path, name: str = "stable_diffusion", classes=tuple(WNIDS[:3]), per_class: int = 5,
                 size: int = 32) -> Path:
    """`<root>/<name>/<class>/<n>.png|jpg` (no train/val: the source holds out a seeded val split)."""
    base = Path(root) / name
    for label, c in enumerate(classes):
        for n in range(per_class):
            write_jpeg(base / c / f"{n:03d}.jpg", label, size, seed=label * 100 + n)
    return base


INAT_SPECIES = {"Aves": ["Cardinalis cardinalis", "Turdus migratorius"], "Plantae": ["Quercus alba"],
                "Insecta": ["Danaus plexippus"]}


def write_inat2017(root: Path, species: dict = INAT_SPECIES, train_per_class: int = 3, val_per_class: int = 2,
                   size: int = 40) -> Path:
    """`<root>/inat2017/` with train_val_images/<super>/<species>/<id>.jpg and COCO-style train/val jsons."""
    import json

    base = Path(root) / "inat2017"
    categories, image_id = [], 0
    splits = {"train": {"images": [], "annotations": []}, "val": {"images": [], "annotations": []}}
    for cid, (supercategory, name) in enumerate((s, n) for s, names in species.items() for n in names):
        categories.append({"id": cid, "name": name, "supercategory": supercategory})
        for split, count in (("train", train_per_class), ("val", val_per_class)):
            for _ in range(count):
                rel = f"train_val_images/{supercategory}/{name}/{image_id:06d}.jpg"
                write_jpeg(base / rel, cid, size, seed=image_id)
                splits[split]["images"].append({"id": image_id, "file_name": rel, "width": size, "height": size * 3 // 4})
                splits[split]["annotations"].append({"id": image_id, "image_id": image_id, "category_id": cid})
                image_id += 1
    for split, data in splits.items():
        (base / f"{split}2017.json").write_text(json.dumps({**data, "categories": categories}))
    return base


IWILDCAM_COUNTS = {"train": 12, "id_val": 4, "id_test": 4, "val": 4, "test": 6}


def write_iwildcam(root: Path, num_classes: int = 3, counts: dict = IWILDCAM_COUNTS, size: int = 48) -> Path:
    """`<root>/iwildcam_v2.0/` with metadata.csv (pandas, index column kept), categories.csv, train/*.jpg.

    Labels cycle through 0..num_classes-1 in every split, so every split has every class.
    """
    import pandas as pd

    base = Path(root) / "iwildcam_v2.0"
    rows, n = [], 0
    for split, count in counts.items():
        for i in range(count):
            y = i % num_classes
            filename = f"{n:08x}-aaaa-bbbb.jpg"
            write_jpeg(base / "train" / filename, y, size, seed=n)
            rows.append({"split": split, "location_remapped": i % 3, "location": 100 + i % 3, "sequence_remapped": n,
                         "seq_id": f"seq{n}", "y": y, "category_id": 10 * y + 1,
                         "datetime": "2013-06-05 12:00:00.000", "filename": filename, "image_id": f"img{n}"})
            n += 1
    pd.DataFrame(rows).to_csv(base / "metadata.csv")  # index column written, as WILDS ships it
    pd.DataFrame({"y": range(num_classes), "category_id": [10 * y + 1 for y in range(num_classes)],
                  "name": [f"species_{y}" for y in range(num_classes)]}).to_csv(base / "categories.csv", index=False)
    return base


DOMAINNET_CLASSES = ["aircraft_carrier", "airplane", "alarm_clock"]


def write_domainnet(root: Path, domains=("clipart", "sketch", "real"), classes=tuple(DOMAINNET_CLASSES),
                    train_per_class: int = 3, test_per_class: int = 2, size: int = 32) -> Path:
    """`<root>/domainnet/<domain>/<class>/<domain>_<c>_<n>.jpg` and `<domain>_{train,test}.txt`."""
    base = Path(root) / "domainnet"
    for d, domain in enumerate(domains):
        lines = {"train": [], "test": []}
        for label, c in enumerate(classes):
            for n in range(train_per_class + test_per_class):
                rel = f"{domain}/{c}/{domain}_{label:03d}_{n:06d}.jpg"
                write_jpeg(base / rel, label, size, seed=d * 1000 + label * 10 + n)
                lines["train" if n < train_per_class else "test"].append(f"{rel} {label}")
        for split, content in lines.items():
            (base / f"{domain}_{split}.txt").write_text("\n".join(content) + "\n")
    return base
