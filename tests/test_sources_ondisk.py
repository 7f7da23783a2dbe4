"""On-disk sources read from tiny fixtures in each real layout (tests/layouts.py), and the prepare CLI."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from datasets import SourceError, get_source
from datasets.readers.image_files import DEFAULT_JPEG_FRACTION, storage_tag
from datasets.storage.beton import beton_path, read_labels
from layouts import (DOMAINNET_CLASSES, INAT_SPECIES, IWILDCAM_COUNTS, WNIDS, add_corrupt_images, class_color,
                     write_domainnet, write_folder, write_imagenet, write_inat2017, write_iwildcam, write_jpeg)

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    """The folder holding every dataset, as `--data-root`; ImageNet's train has 3 unreadable images."""
    root = tmp_path_factory.mktemp("data")
    write_imagenet(root)
    add_corrupt_images(root / "imagenet" / "train" / WNIDS[0])
    write_inat2017(root)
    write_iwildcam(root)
    write_domainnet(root)
    write_folder(root)
    return root


def test_imagenet_layout_and_corrupt_images(data_root):
    src = get_source("imagenet", data_root)
    assert src.classes == WNIDS[:3] and src.splits == ("train", "val")
    assert {s: len(src.labels(s)) for s in src.splits} == {"train": 12, "val": 6}  # 3 unreadable skipped
    assert np.bincount(src.labels("train")).tolist() == [4, 4, 4]
    assert src.num_skipped("train") == 3 and src.describe()["skipped_images"] == {"train": 3, "val": 0}
    log = src.skipped_log("train").read_text()
    assert log.startswith("# 3 of 15 images") and {"zz_truncated.JPEG", "zz_text.JPEG", "zz_empty.JPEG"} == {
        Path(line.split("\t")[0]).name for line in log.splitlines()[1:]}
    # pointing --data-root at the dataset folder itself works too, with the same content
    same = get_source("imagenet", data_root / "imagenet")
    assert same.content_hash("train") == src.content_hash("train")


def test_beton_round_trip_keeps_labels_row_for_row(data_root):
    from datasets.storage.loaders import make_loader

    src = get_source("imagenet", data_root)
    path = src.beton("train", 32)
    assert "-512px-" in path.name and src.beton("train", 224) == path  # one stored file serves any size up to it
    assert np.array_equal(read_labels(path), src.labels("train"))  # corrupt rows skipped in both
    images, labels = zip(*make_loader(path, batch_size=8, resolution=16, num_workers=1, train=False))
    images, labels = np.concatenate([x.numpy() for x in images]), np.concatenate([y.numpy() for y in labels])
    assert np.array_equal(labels, src.labels("train"))
    mean, std = np.array([0.485, 0.456, 0.406]) * 255, np.array([0.229, 0.224, 0.225]) * 255
    pixels = images.transpose(0, 2, 3, 1) * std + mean  # back to 0..255
    for image, label in zip(pixels, labels):  # each image is its class's flat colour (+ JPEG noise)
        assert np.abs(image.mean(axis=(0, 1)) - class_color(int(label))).max() < 12
    with pytest.raises(SourceError, match="stored at most 512 px.*--max-resolution 1024"):
        src.beton("train", 1024)


def test_inat2017_layout(data_root):
    src = get_source("inat2017", data_root)
    names = [n for species in INAT_SPECIES.values() for n in species]
    assert src.classes == names
    assert src.supercategories == [s for s, species in INAT_SPECIES.items() for _ in species]
    assert {s: len(src.labels(s)) for s in src.splits} == {"train": 3 * len(names), "val": 2 * len(names)}
    assert np.bincount(src.labels("val")).tolist() == [2] * len(names)


def test_iwildcam_layout(data_root):
    meta = pd.read_csv(data_root / "iwildcam_v2.0" / "metadata.csv")
    assert meta.columns[0] == "Unnamed: 0"  # the fixture keeps pandas' index column, as WILDS ships it
    src = get_source("iwildcam", data_root)
    assert src.splits == ("train", "id_val", "id_test", "val", "test")
    assert src.eval_splits == {"id": "id_test", "ood": "test", "id_val": "id_val", "ood_val": "val"}
    assert {s: len(src.labels(s)) for s in src.splits} == IWILDCAM_COUNTS
    assert src.classes == ["species_0", "species_1", "species_2"]
    assert np.array_equal(src.labels("test"), meta[meta["split"] == "test"]["y"].to_numpy())
    assert src.max_resolution == 448 and src.square  # whole frames squeezed to 448 x 448, as WILDS does


def test_iwildcam_stores_whole_frames_as_squares(tmp_path):
    """A wide camera-trap frame is squeezed to a square, as WILDS' Resize((448, 448)), never centre-cropped."""
    from PIL import Image

    from datasets.readers.image_files import ImageFiles

    frame = np.zeros((36, 64, 3), dtype=np.uint8)  # 16:9; red left edge, blue right edge, as animals at the borders
    frame[:, :8] = (255, 0, 0)
    frame[:, -8:] = (0, 0, 255)
    Image.fromarray(frame).save(tmp_path / "wide.png")
    image, _ = ImageFiles(tmp_path, ["wide.png"], np.array([0]), 32, square=True)[0]
    assert image.shape == (32, 32, 3)
    assert image[:, 0, 0].min() > 200 and image[:, -1, 2].min() > 200  # both edges kept
    cropped, _ = ImageFiles(tmp_path, ["wide.png"], np.array([0]), 64)[0]
    assert cropped.shape == (36, 64, 3)  # other sources keep the aspect ratio


def test_iwildcam_wrong_layout_names_file_and_field(tmp_path):
    base = write_iwildcam(tmp_path, counts={"train": 2, "id_val": 1, "id_test": 1, "val": 1, "test": 1})
    meta = pd.read_csv(base / "metadata.csv", index_col=0)
    meta.drop(columns=["y"]).to_csv(base / "metadata.csv")
    with pytest.raises(SourceError, match=r"metadata\.csv: no column 'y'.*WILDS v2\.0") as err:
        get_source("iwildcam", tmp_path)
    assert "\n" not in str(err.value)


def test_domainnet_layout_and_target_mode(data_root):
    src = get_source("domainnet", data_root)
    assert src.classes == DOMAINNET_CLASSES and src.holdout_split == "test"
    assert src.options["domains"] == ["clipart", "real", "sketch"]  # the domains present
    assert {s: len(src.labels(s)) for s in src.splits} == {"train": 27, "test": 18}
    domains = src.domains("train")
    assert len(domains) == len(src.labels("train")) and sorted(set(domains)) == ["clipart", "real", "sketch"]
    only = get_source("domainnet", data_root, domains=["sketch"])
    assert set(only.domains("test")) == {"sketch"} and len(only.labels("test")) == 6
    target = get_source("domainnet", data_root, domain="sketch")
    assert target.splits == ("train", "id_test", "test") and target.eval_splits == {"id": "id_test", "ood": "test"}
    assert set(target.domains("train")) == {"sketch"} and set(target.domains("test")) == {"clipart", "real"}
    with pytest.raises(SourceError, match="unknown domain 'photo'"):
        get_source("domainnet", data_root, domains=["photo"])


def test_folder_holds_out_a_seeded_val_split(data_root):
    src = get_source("folder", data_root, path="stable_diffusion")
    assert src.classes == WNIDS[:3]  # wnid folder names: the WordNet interventions apply
    train, val = src.scans["train"].files, src.scans["val"].files
    assert len(train) == 12 and len(val) == 3 and not set(train) & set(val)
    assert np.bincount(src.labels("val")).tolist() == [1, 1, 1]
    again, other = get_source("folder", data_root, path="stable_diffusion"), get_source(
        "folder", data_root, path="stable_diffusion", seed=1)
    assert again.scans["val"].files == val and other.scans["val"].files != val
    # a folder with train/ and val/ inside uses them as they are
    split = get_source("folder", data_root, path="imagenet")
    assert len(split.scans["val"].files) == 6


def test_prepare_folder_warns_per_class_left_without_images(tmp_path, capsys):
    """A corrupt file that was a class's only validation image leaves that class unevaluated: said per class."""
    from datasets.__main__ import main

    root = tmp_path / "data"
    base = root / "mine"
    for label, wnid in enumerate(WNIDS[:3]):
        for n in range(3):
            write_jpeg(base / "train" / wnid / f"{n}.jpg", label, seed=label * 10 + n)
    write_jpeg(base / "val" / WNIDS[0] / "0.jpg", 0)
    (base / "val" / WNIDS[1]).mkdir(parents=True)
    (base / "val" / WNIDS[1] / "0.jpg").write_bytes(b"not a jpeg")  # its only validation image
    write_jpeg(base / "val" / WNIDS[2] / "0.jpg", 2)
    (base / "val" / WNIDS[2] / "1.jpg").write_bytes(b"")             # one of two: the class keeps one
    assert main(["prepare", "folder", "--data-root", str(root), "-o", "path=mine", "--num-workers", "1"]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1, warnings
    assert f"folder/val: class '{WNIDS[1]}' has no validation images: its 1 listed image is unreadable" in warnings[0]
    # held out per class (no val/ folder): a class with a single image has none to evaluate on
    held = root / "held"
    for n in range(3):
        write_jpeg(held / WNIDS[0] / f"{n}.jpg", 0, seed=n)
    write_jpeg(held / WNIDS[1] / "0.jpg", 1)
    get_source("folder", root, path="held").labels("val")
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert warnings == [f"warning: folder/val: class '{WNIDS[1]}' has no validation images: no image of it is in val"]


@pytest.mark.parametrize("name, options, expected", [
    ("imagenet", {}, r"ImageNet not found: looked for train, val in .*/imagenet and .*image-net\.org"),
    ("inat2017", {}, r"iNaturalist 2017 not found: .*train2017\.json.*inat_comp"),
    ("iwildcam", {}, r"iWildCam-WILDS v2\.0 not found: .*metadata\.csv.*iwildcam_v2\.0"),
    ("domainnet", {}, r"DomainNet not found: .*clipart_train\.txt.*M3SDA"),
    ("folder", {"path": "stable_diffusion"}, r"folder: .*stable_diffusion does not exist"),
])
def test_missing_dataset_is_a_one_line_error(tmp_path, name, options, expected):
    with pytest.raises(SourceError, match=expected) as err:
        get_source(name, tmp_path, **options)
    assert "\n" not in str(err.value)
    with pytest.raises(SourceError, match="data-root"):
        get_source(name, None, **options)


def test_empty_class_folder_is_an_error(tmp_path):
    base = write_imagenet(tmp_path, wnids=WNIDS[:2], train_per_class=1, val_per_class=1)
    (base / "train" / WNIDS[3]).mkdir()
    with pytest.raises(SourceError, match=rf"{WNIDS[3]}: empty class folder"):
        get_source("imagenet", tmp_path)


def test_changed_dataset_gets_a_new_content_hash(tmp_path):
    from layouts import write_jpeg

    write_imagenet(tmp_path, wnids=WNIDS[:2], train_per_class=2, val_per_class=1)
    before = get_source("imagenet", tmp_path).content_hash("train")
    assert get_source("imagenet", tmp_path).content_hash("train") == before  # scan reused
    write_jpeg(tmp_path / "imagenet" / "train" / WNIDS[0] / "new.JPEG", 0)
    after = get_source("imagenet", tmp_path)
    assert after.content_hash("train") != before and len(after.labels("train")) == 5


def test_disk_space_is_checked_before_writing(tmp_path, monkeypatch):
    monkeypatch.setenv("SWEEPS_CACHE", str(tmp_path / "cache"))
    write_imagenet(tmp_path, wnids=WNIDS[:2], train_per_class=2, val_per_class=1)
    src = get_source("imagenet", tmp_path, max_resolution=64)
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage._replace(free=100))
    with pytest.raises(OSError, match="not enough disk space.*SWEEPS_CACHE"):
        src.beton("val", 32)
    assert not src.stored_betons("val")


def test_interrupted_write_leaves_nothing_and_leftovers_are_ignored(tmp_path, monkeypatch):
    from ffcv.writer import DatasetWriter

    monkeypatch.setenv("SWEEPS_CACHE", str(tmp_path / "cache"))  # its leftover must not reach other tests
    write_imagenet(tmp_path, wnids=WNIDS[:2], train_per_class=2, val_per_class=1)
    src = get_source("imagenet", tmp_path, max_resolution=48)
    final = beton_path("imagenet", "val", 48, src.content_hash("val"), storage_tag(DEFAULT_JPEG_FRACTION))
    leftover = final.with_name(f".{final.name}.tmp-1")  # as a killed run (pid 1) would leave it
    leftover.parent.mkdir(parents=True, exist_ok=True)
    leftover.write_bytes(b"half a file")

    def interrupted(self, *args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(DatasetWriter, "_write_common", interrupted)  # Ctrl-C while FFCV's processes write
        with pytest.raises(KeyboardInterrupt):
            src.beton("val", 32)
    assert not final.exists() and not src.stored_betons("val")
    assert [p.name for p in final.parent.glob(f".{final.name}.tmp-*")] == [leftover.name]  # only the old leftover
    path = src.beton("val", 32)
    assert path == final and np.array_equal(read_labels(path), src.labels("val"))


def _stored_modes(path: Path) -> set[int]:
    """FFCV's storage mode of each image row of a file: 0 JPEG, 1 raw pixels."""
    from ffcv.reader import Reader

    return set(Reader(str(path)).metadata["f0"]["mode"].tolist())


def test_images_are_stored_as_asked_and_any_stored_file_serves(tmp_path, monkeypatch):
    monkeypatch.setenv("SWEEPS_CACHE", str(tmp_path / "cache"))
    write_imagenet(tmp_path, wnids=WNIDS[:2], train_per_class=2, val_per_class=2)
    jpeg_only = get_source("imagenet", tmp_path, max_resolution=48)
    jpeg_only.jpeg_fraction = 1.0  # as `prepare --jpeg-fraction 1` sets it
    path = jpeg_only.beton("val")
    assert "-48px-jpeg100-" in path.name and _stored_modes(path) == {0}
    # a sweep's source (no fraction asked for) reads the stored file instead of converting again
    assert get_source("imagenet", tmp_path, max_resolution=48).beton("val", 32) == path
    raw = get_source("imagenet", tmp_path, max_resolution=48)
    raw.jpeg_fraction = 0.0
    raw_path = raw.beton("val")
    assert "-48px-jpeg0-" in raw_path.name and _stored_modes(raw_path) == {1}
    assert read_labels(raw_path).tolist() == read_labels(path).tolist() == [0, 0, 1, 1]


def _stored_bytes(path: Path) -> list[bytes]:
    """The image bytes of each row of a `.beton`, in row order (from the file's own tables)."""
    from ffcv.reader import Reader

    reader = Reader(str(path))
    sizes = dict(zip(reader.alloc_table["ptr"].tolist(), reader.alloc_table["size"].tolist()))
    data = path.read_bytes()
    return [data[p:p + sizes[p]] for p in reader.metadata["f0"]["data_ptr"].tolist()]


def test_a_colour_jpeg_that_fits_is_stored_as_its_own_file(tmp_path, monkeypatch):
    from PIL import Image

    monkeypatch.setenv("SWEEPS_CACHE", str(tmp_path / "cache"))
    base = write_imagenet(tmp_path, wnids=WNIDS[:2], train_per_class=1, val_per_class=2, size=40)
    val = sorted((base / "val").glob("*/*.JPEG"))  # the scan's order: class folders, then file names
    Image.open(val[1]).convert("L").save(val[1], quality=95)  # a grey JPEG: decoded to RGB and encoded again
    Image.open(val[3]).save(val[3].with_suffix(".png"))  # not a JPEG
    val[3].unlink()
    src = get_source("imagenet", tmp_path, max_resolution=40)
    src.jpeg_fraction = 1.0
    stored = _stored_bytes(src.beton("val"))
    assert [f.rsplit("/", 1)[1] for f in src.scans["val"].files] == [val[0].name, val[1].name, val[2].name,
                                                                     val[3].with_suffix(".png").name]
    assert stored[0] == val[0].read_bytes() and stored[2] == val[2].read_bytes()
    assert stored[1] != val[1].read_bytes() and stored[3][:2] == stored[1][:2] == b"\xff\xd8"  # re-encoded JPEGs
    monkeypatch.setenv("SWEEPS_CACHE", str(tmp_path / "cache-32"))  # else the 40-px file would serve
    smaller = get_source("imagenet", tmp_path, max_resolution=32)  # 40-px images resized: re-encoded
    smaller.jpeg_fraction = 1.0
    assert _stored_bytes(smaller.beton("val"))[0] != val[0].read_bytes()


def test_prepare_refuses_a_jpeg_fraction_it_cannot_use(tmp_path):
    from datasets.__main__ import main

    with pytest.raises(SystemExit) as exit_info:
        main(["prepare", "folder", "--jpeg-fraction", "1.5"])
    assert exit_info.value.code == 2
    assert main(["prepare", "synthnet", "--jpeg-fraction", "0.5"]) == 2  # generated: raw pixels only


def _prepare(cache: Path, data_root: Path) -> tuple[subprocess.CompletedProcess, float]:
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "datasets", "prepare", "imagenet", "--data-root", str(data_root),
                           "--max-resolution", "64"], cwd=ROOT, env={**os.environ, "SWEEPS_CACHE": str(cache)},
                          capture_output=True, text=True, timeout=300)
    return proc, time.monotonic() - start


def test_prepare_cli_shows_progress_then_reuses_the_cache(tmp_path, data_root):
    first, _ = _prepare(tmp_path / "cache", data_root)
    assert first.returncode == 0, first.stderr
    # nothing asked for labels first, so the conversion is the check: all 15 listed images, one decode each
    assert "checking" not in first.stderr and "converting imagenet/train: 15 images" in first.stderr
    assert "100%" in first.stderr  # the progress bars ran to the end
    assert "(3 unreadable skipped, listed in" in first.stdout
    second, wall = _prepare(tmp_path / "cache", data_root)
    assert second.returncode == 0 and "converting" not in second.stderr and "checking" not in second.stderr
    assert float(re.search(r"done in ([\d.]+) s", second.stdout).group(1)) < 1.0
    assert wall < 3.0, f"second prepare took {wall:.2f} s (interpreter start included)"
    assert len(list((tmp_path / "cache" / "betons").glob("imagenet-*-64px-*.beton"))) == 2


SWEEP_SCRIPT = """
import sys
from engine.runner import RunOptions, run_sweep
from engine.spec import Recipe, SweepSpec
recipe = Recipe(pretrain_epochs=1, pretrain_resolution=32, pretrain_batch_size=4, pretrain_lr=0.05,
                finetune_epochs=1, finetune_resolution=32, finetune_batch_size=4, finetune_lr=1e-3)
spec = SweepSpec(name="ondisk", intervention="quantity", values=(9,), sources=("imagenet",),
                 archs=("resnet18",), target="iwildcam", recipe=recipe)
print("sweep:", run_sweep(spec, RunOptions(data_root=sys.argv[1], storage_path=sys.argv[2], verbose=0)))
# pre-trained on one DomainNet domain, evaluated during pre-training on that domain's test files only
spec = SweepSpec(name="ondisk_domain", intervention="domain", values=("sketch",), sources=("domainnet",),
                 archs=("resnet18",), target="iwildcam", baselines=(), recipe=recipe)
print("sweep:", run_sweep(spec, RunOptions(data_root=sys.argv[1], storage_path=sys.argv[2], verbose=0)))
"""


@pytest.mark.slow
def test_sweep_trains_on_real_layouts(tmp_path, data_root):
    """A real tiny sweep: pre-train on the ImageNet layout (with its unreadable images), fine-tune on iWildCam."""
    from analysis.ingest import load_experiments

    proc = subprocess.run([sys.executable, "-c", SWEEP_SCRIPT, str(data_root), str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    df = load_experiments([tmp_path / "ondisk"])
    assert sorted(df["intervention"]) == ["quantity", "scratch"] and set(df["epoch"]) == {1}
    assert df[["id_f1", "ood_f1", "id_val_f1", "ood_val_f1"]].apply(lambda s: s.between(0, 1).all()).all()
    metas = [json.loads(p.read_text()) for p in (tmp_path / "pretrained").glob("*/meta.json")]
    meta = next(m for m in metas if m["source"]["source"] == "imagenet")
    assert meta["source"]["skipped_images"] == {"train": 3, "val": 0}  # the trial recorded the skipped images
    assert meta["subset"]["num_images"] == 9 and meta["holdout_images"] == 6
    domain = next(m for m in metas if m["source"]["source"] == "domainnet")
    assert domain["subset"]["domain"] == "sketch" and domain["subset"]["num_images"] == 3 * 3
    assert domain["holdout_images"] == 3 * 2  # sketch's test files, not all three domains' 18
    assert load_experiments([tmp_path / "ondisk_domain"])["ood_f1"].between(0, 1).all()
    # every fine-tuning row carries the pre-training subset's size, for the report (none for scratch)
    sizes = df.set_index("intervention")[["subset_images", "subset_classes"]]
    assert sizes.loc["quantity"].tolist() == [9, 3] and sizes.loc["scratch"].isna().all()  # scratch: none


def test_dry_run_decodes_no_image(tmp_path, data_root, monkeypatch, capsys):
    """`--dry-run` previews with every listed file; the unreadable-image check waits for a real run."""
    from engine.runner import RunOptions, run_sweep
    from engine.spec import Recipe, SweepSpec

    monkeypatch.setenv("SWEEPS_CACHE", str(tmp_path / "cache"))
    spec = SweepSpec(name="preview", intervention="quantity", values=(12,), sources=("imagenet",), archs=("resnet18",),
                     target="iwildcam", recipe=Recipe(pretrain_resolution=32, finetune_resolution=32))
    run_sweep(spec, RunOptions(data_root=str(data_root), storage_path=str(tmp_path / "runs"), dry_run=True))
    out = capsys.readouterr().out
    assert re.search(r"imagenet\s+quantity\s+12\s+12\s+3\s+resnet18", out)  # value, images, classes
    assert "not yet checked for unreadable images, so counted with every listed file: iwildcam, imagenet" in out
    assert not list((tmp_path / "cache").rglob("*.skipped.txt"))  # nothing decoded
    assert len(get_source("imagenet", data_root).labels("train")) == 12  # a real use checks: 3 of 15 unreadable
    assert len(list((tmp_path / "cache").rglob("imagenet-train-*.skipped.txt"))) == 1
