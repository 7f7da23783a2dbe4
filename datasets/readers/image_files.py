"""On-disk sources: a list of image files and labels per split, converted once to `.beton` files.

Every on-disk reader (ImageNet, iNaturalist, iWildCam, DomainNet, a folder of images) builds an
`ImageFileSource` from a *scan*: per split, the image paths relative to the dataset folder, their
labels and file sizes. Three stages, each cached on disk so the next `get_source` is cheap:

1. **Scan** (`cached_scan`): list the files, no image is opened. Keyed by the modification times
   of the index files and image folders (a folder's mtime changes when a file is added, removed or
   renamed in it), so an unchanged dataset is not listed again.
2. **Check**: decode every image once, in a process pool, with a progress bar. Unreadable images
   (truncated, not an image, empty, missing) are counted and listed in
   `<cache>/betons/<source>-<split>-<hash>.skipped.txt`; the list is the record that the check ran.
   `labels(split)` is the scan's labels without the skipped rows, so it equals the `.beton`'s labels
   row for row, before and after conversion. Where conversion comes first (`datasets prepare`, or
   `beton()` of a split nobody asked labels of yet), the check *is* the conversion: every listed
   image is converted, one that fails to decode is dropped from the written file
   (`datasets.storage.beton.drop_rows`) and the log is written before the file is renamed into
   place: one decode per image. Where labels come first (the runner's `validate()` builds the
   subsets before anything is converted), `kept()` checks on its own, decoding at reduced size
   (JPEG draft mode); the conversion then reads the log. A node whose cache lacks the log copies
   the driver's from the shared store first, when the sweep has one (`datasets.storage.shared_cache`).
3. **Convert** (`ImageFileSource.beton`): the kept images with the longer side at most
   `max_resolution`, about `jpeg_fraction` of them (default 0.5, FFCV's ImageNet recipe) stored as
   JPEG (a colour JPEG that fits as its own file, any other image re-encoded at quality 90) and the
   rest as raw pixels, which cost no decoding when read; one
   `.beton` per split, named by (source, split, stored resolution, storage, content hash). Any
   requested resolution up to the stored one is served by the same file: the loaders' crop
   decoders resize. Any storage serves too: it changes the speed and size, not the images' use. An image that fails here although the check passed it
   (changed on disk since) is dropped the same way and added to the log.

The content hash covers (relative path, file size, label) of every listed file. Not mtimes: a
copy of the dataset to another disk (cp, rsync without -t) changes every mtime but no content, and
should reuse the cache; a re-encoded or replaced image nearly always changes its size.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import posixpath
import sys
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Callable

import numpy as np

from datasets.storage.atomic import atomic_write
from datasets.storage.beton import beton_path, cache_root, check_free_space, drop_rows, ensure_beton
from datasets.storage.cache_files import cached
from datasets.storage.shared_cache import fetch
from datasets.sources import Source, SourceError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
# Natural images are stored with the longer side at 512 px: room for 224-px random resized crops
# and for fine-tuning at 448 px (WILDS' iWildCam resolution) from a square centre crop.
DEFAULT_MAX_RESOLUTION = 512
# Stored as JPEG (quality 90): half of the images, chosen by content; the rest raw. FFCV's ImageNet
# example writes its files so (`write_imagenet.sh 500 0.50 90`). Raw images are ~6x larger and skip
# the JPEG decode, the largest cost of a training epoch on CPUs (benchmarks/loader_vs_torch.py).
DEFAULT_JPEG_FRACTION = 0.5
# Raw pixels take 3 bytes each; a photo's JPEG file takes ~0.25-0.5 bytes per pixel.
RAW_PER_FILE_BYTE = 12


def _storage_words(jpeg_fraction: float) -> str:
    if jpeg_fraction >= 1:
        return "every image as JPEG"
    return "every image raw" if jpeg_fraction <= 0 else f"{jpeg_fraction:.0%} as JPEG, the rest raw"


def storage_tag(jpeg_fraction: float) -> str:
    """How a file stores its images, in its name: `jpeg50` = about half of them as JPEG, the rest raw."""
    return f"jpeg{round(jpeg_fraction * 100)}"


@dataclass
class Scan:
    """What a reader found on disk for one split: paths relative to the dataset folder."""

    files: list[str]
    labels: np.ndarray
    sizes: np.ndarray                 # bytes; -1 for a listed file that does not exist
    domains: np.ndarray | None = None


_SCANS: dict[str, dict] = {}
SCAN_VERSION = 1  # bump when a reader's scan result changes shape: old cached scans are then ignored


def cached_scan(name: str, key_paths: list[Path], build: Callable[[], dict]) -> dict:
    """`build()`'s result, cached in memory and on disk, keyed by `key_paths`' (path, mtime, size).

    `key_paths` are the index files and image folders a reader looks at; listing them is cheap
    (one stat each), listing every image is not (ImageNet has 1.28 M files).
    """
    stats = []
    for p in key_paths:
        st = p.stat()
        stats.append((str(p.resolve()), st.st_mtime_ns, st.st_size))
    key = hashlib.sha256(json.dumps([SCAN_VERSION, name, stats]).encode()).hexdigest()[:20]
    if key in _SCANS:
        return _SCANS[key]
    result = cached(cache_root() / "scans" / f"{name}-{key}.npz", SCAN_VERSION, build, types=(Scan,))
    _SCANS[key] = result
    return result


def file_sizes(root: Path, files: list[str], index: Path | None = None) -> np.ndarray:
    """Size of each file in bytes, -1 where it is missing (counted as unreadable later, not fatal).

    Every path must lie inside `root`: an index (`index`) naming an absolute path or one that climbs
    out with `..` is refused, never read.
    """
    for f in files:
        normal = posixpath.normpath(f.replace("\\", "/"))
        if posixpath.isabs(normal) or normal == ".." or normal.startswith("../"):
            raise SourceError(f"{index or root}: lists {f!r}, which is outside the dataset folder {root}; refused "
                              "(fix or re-download the index)")
    sizes = np.empty(len(files), dtype=np.int64)
    for i, f in enumerate(files):
        try:
            sizes[i] = os.stat(root / f).st_size
        except OSError:
            sizes[i] = -1
    return sizes


def list_images(folder: Path) -> list[str]:
    """Names of the image files directly in `folder`, sorted (os.scandir: no image is opened)."""
    with os.scandir(folder) as it:
        return sorted(e.name for e in it if e.is_file() and e.name.lower().endswith(IMAGE_EXTENSIONS))


def list_subfolders(folder: Path) -> list[str]:
    with os.scandir(folder) as it:
        return sorted(e.name for e in it if e.is_dir() and not e.name.startswith("."))


def find_dataset_dir(data_root, sub: str, markers: tuple[str, ...], what: str, download: str) -> Path:
    """`<data_root>/<sub>` (or `data_root` itself) when it holds every marker; else a one-line error."""
    if data_root is None:
        raise SourceError(f"{what} reads its files from --data-root: download {download} and put them "
                          f"in <data-root>/{sub}/ ({', '.join(markers)})")
    root = Path(data_root).expanduser()
    for candidate in (root / sub, root):
        if all((candidate / m).exists() for m in markers):
            return candidate
    raise SourceError(
        f"{what} not found: looked for {', '.join(markers)} in {root / sub} and {root}; download {download} "
        f"and put it in {root / sub}/"
    )


def check_image(path: str) -> str:
    """'' when `path` decodes as an image, else the reason (one line)."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            # JPEG: decode at 1/8 scale (DC coefficients only): every byte is still entropy-decoded, so a
            # truncated or broken stream fails as in a full decode, at a fraction of its cost
            img.draft("RGB", (1, 1))
            img.load()
        return ""
    except Exception as error:  # noqa: BLE001 - PIL raises many kinds for bad files; all mean "skip"
        return f"{type(error).__name__}: {error}".replace("\n", " ").replace("\t", " ")


def _check_job(path: str) -> str:
    return check_image(path)


class ImageFiles:
    """A split's images as (uint8 HxWx3, label), as FFCV's writer wants.

    With `jpeg_fraction`, each row also says how it is stored (`datasets.storage.fields`), chosen
    from its file's bytes: a colour JPEG no larger than `max_resolution` that is to be stored as JPEG
    is stored as its own file (`StoredJpeg`), checked by decoding it at 1/8 scale as `check_image`
    does (every byte entropy-decoded) instead of in full; any other row is decoded (`DecidedImage`).

    An image that fails to decode cannot be left out on the spot: FFCV's writer waits forever for
    a worker that raised, and its rows are fixed in advance. Its row, path and reason are appended
    to `failures` and an 8 x 8 placeholder fills the row, which the caller then removes from the
    written file (`drop_rows`) before the file is renamed into place.
    """

    def __init__(self, root: Path, files: list[str], labels: np.ndarray, max_resolution: int, square: bool = False,
                 failures: Path | None = None, jpeg_fraction: float | None = None):
        self.root, self.files, self.labels, self.max_resolution = root, files, labels, max_resolution
        self.square, self.failures, self.jpeg_fraction = square, failures, jpeg_fraction

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        from PIL import Image

        from datasets.storage.fields import DecidedImage, StoredJpeg, stored_as_jpeg

        try:
            data = (self.root / self.files[i]).read_bytes()
            as_jpeg = None if self.jpeg_fraction is None else stored_as_jpeg(data, self.jpeg_fraction)
            with Image.open(io.BytesIO(data)) as img:
                if (as_jpeg and img.format == "JPEG" and img.mode == "RGB" and not self.square
                        and max(img.size) <= self.max_resolution):
                    width, height = img.size
                    img.draft("RGB", (1, 1))  # the check alone (check_image): a 1/8-scale decode of every byte
                    img.load()
                    return StoredJpeg(data, height, width), int(self.labels[i])
                img.draft("RGB", (self.max_resolution, self.max_resolution))
                if img.mode != "RGB":  # convert() would copy an RGB image too
                    img = img.convert("RGB")
                if self.square:  # the whole frame squeezed to a square, as WILDS' Resize((448, 448))
                    img = img.resize((self.max_resolution, self.max_resolution), Image.BILINEAR)
                image = np.asarray(img)
            if as_jpeg is not None:
                image = DecidedImage(image, as_jpeg)
        except Exception as error:  # noqa: BLE001 - PIL raises many kinds for bad files; all mean "skip"
            if self.failures is None:
                raise
            reason = f"{type(error).__name__}: {error}".replace("\n", " ").replace("\t", " ")
            with open(self.failures, "a") as f:  # one short O_APPEND write per line: workers do not interleave
                f.write(f"{i}\t{self.files[i]}\t{reason}\n")
            image = np.zeros((8, 8, 3), dtype=np.uint8)  # placeholder row, removed before the file is used
        return image, int(self.labels[i])


@dataclass
class ImageFileSource(Source):
    """A source read from image files: per split a `Scan`, relative to `root`."""

    root: Path | None = None
    scans: dict[str, Scan] = field(default_factory=dict)
    # store every image resized to max_resolution x max_resolution, aspect ratio not kept (iWildCam,
    # as WILDS does), so the loaders' square centre crop sees the whole frame
    square: bool = False
    # a preview (`--dry-run`): labels() counts every listed file instead of decoding them all first
    unchecked: bool = False
    # splits in which every class should have images (class-folder layouts): a class left without
    # any readable image there (e.g. its only validation image is corrupt) gets a warning
    every_class_in: tuple[str, ...] = ()
    # fraction of the images stored as JPEG (the rest raw); None: any stored file serves, and a new
    # one stores DEFAULT_JPEG_FRACTION. `datasets prepare --jpeg-fraction` sets it.
    jpeg_fraction: float | None = None

    @cached_property
    def max_resolution(self) -> int:
        return int(self.options.get("max_resolution") or DEFAULT_MAX_RESOLUTION)

    def content_hash(self, split: str) -> str:
        # Stored resolution and worker counts are not content: they are in the file name or irrelevant.
        cached = self.__dict__.setdefault("_hashes", {})
        if split not in cached:
            scan = self.scans[split]
            head = {"source": self.name, "split": split, "classes": self.classes, **({"square": True} if self.square else {})}
            h = hashlib.sha256(json.dumps(head).encode())
            for f, size, label in zip(scan.files, scan.sizes.tolist(), scan.labels.tolist()):
                h.update(f"{f}\t{size}\t{label}\n".encode())
            cached[split] = h.hexdigest()
        return cached[split]

    def skipped_log(self, split: str) -> Path:
        return cache_root() / "betons" / f"{self.name}-{split}-{self.content_hash(split)[:16]}.skipped.txt"

    def kept(self, split: str, num_workers: int | None = None) -> np.ndarray:
        """Rows of the scan whose image decodes (checked once per content hash, then read from the log)."""
        self.check_split(split)
        cached = self.__dict__.setdefault("_kept", {})
        if split in cached:
            return cached[split]
        scan, log = self.scans[split], self.skipped_log(split)
        if not log.exists() and self.unchecked:
            return np.arange(len(scan.files))  # not cached: a later real call still checks
        if not log.exists():
            from filelock import FileLock

            log.parent.mkdir(parents=True, exist_ok=True)
            with FileLock(str(log) + ".lock"):  # trials of one node (one cache) check a split once
                if not log.exists() and not fetch(log):  # the driver's record, when it shared one (shared_cache)
                    self._check(split, log, num_workers or min(8, os.cpu_count() or 1))
        skipped = {line.split("\t", 1)[0] for line in log.read_text().splitlines() if line and not line.startswith("#")}
        keep = np.array([f not in skipped for f in scan.files], dtype=bool)
        cached[split] = np.flatnonzero(keep)
        if split in self.every_class_in:
            self._warn_empty_classes(split, keep, log)
        return cached[split]

    def _warn_empty_classes(self, split: str, keep: np.ndarray, log: Path) -> None:
        """One warning per class with no readable image in `split`: trained or evaluated without it."""
        labels = self.scans[split].labels
        listed = np.bincount(labels, minlength=self.num_classes)
        readable = np.bincount(labels[keep], minlength=self.num_classes)
        role = "training" if split == "train" else "validation"
        for c in np.flatnonzero(readable == 0):
            why = (f"its {listed[c]} listed image{'s are' if listed[c] > 1 else ' is'} unreadable (see {log})"
                   if listed[c] else f"no image of it is in {split}")
            print(f"warning: {self.name}/{split}: class '{self.classes[c]}' has no {role} images: {why}",
                  file=sys.stderr)

    def _check(self, split: str, log: Path, num_workers: int) -> None:
        from tqdm import tqdm

        from datasets.processes import fork_pool

        scan = self.scans[split]
        jobs = [str(self.root / f) for f in scan.files]
        desc = f"checking {self.name}/{split} images"
        if num_workers > 1 and len(jobs) > 64:
            with fork_pool(num_workers) as pool:
                reasons = list(tqdm(pool.imap(_check_job, jobs, chunksize=64), total=len(jobs), desc=desc, unit="img"))
        else:
            reasons = [check_image(job) for job in tqdm(jobs, desc=desc, unit="img")]
        bad = [(f, r) for f, r in zip(scan.files, reasons) if r]
        # the log's existence marks a finished check, so it is written atomically: never a partial one
        atomic_write(log, (f"# {len(bad)} of {len(jobs)} images of {self.name}/{split} under {self.root} are "
                           "unreadable and skipped (path, reason)\n" + "".join(f"{f}\t{r}\n" for f, r in bad)).encode())
        if bad:
            print(f"{self.name}/{split}: skipped {len(bad)} unreadable images, listed in {log}", file=sys.stderr)

    def num_skipped(self, split: str) -> int:
        return len(self.scans[split].files) - len(self.kept(split))

    def labels(self, split: str) -> np.ndarray:
        return self.scans[split].labels[self.kept(split)]

    def domains(self, split: str) -> np.ndarray | None:
        scan = self.scans[split]
        return None if scan.domains is None else scan.domains[self.kept(split)]

    def stored_betons(self, split: str) -> dict[int, Path]:
        """Existing `.beton` files of this split's content, by stored resolution.

        Only those storing `jpeg_fraction` of their images as JPEG when it is set; else any storage,
        the default one first where a resolution has several. A file without a storage tag in its
        name (written before there was a choice) stores every image as JPEG.
        """
        folder = cache_root() / "betons"
        names = [p.name for p in folder.glob(self._pattern(split))]
        return {res: folder / name for res, name in self._usable(split, names).items()}

    def _pattern(self, split: str) -> str:
        return f"{self.name}-{split}-*px-*{self.content_hash(split)[:16]}.beton"

    def _usable(self, split: str, names) -> dict[int, str]:
        """Of the file names `names` (`_pattern`'s matches), those this source reads, by stored resolution."""
        digest, prefix = self.content_hash(split)[:16], f"{self.name}-{split}-"
        wanted = storage_tag(self.stored_jpeg_fraction)
        found, preferred = {}, {}
        for name in names:
            res, _, rest = name[len(prefix):-len(f"{digest}.beton")].partition("px-")
            tag = rest.rstrip("-") or storage_tag(1.0)
            if not res.isdigit() or (self.jpeg_fraction is not None and tag != wanted):
                continue
            if int(res) not in found or (tag == wanted and not preferred[int(res)]):
                found[int(res)], preferred[int(res)] = name, tag == wanted
        return found

    def _shared_beton(self, split: str, resolution: int) -> Path | None:
        """A file of this split that the driver shared (`shared_cache`), copied into this node's cache.

        Any storage serves, as on the node's own disk: a node fetches what the driver converted or
        prepared rather than convert the images again, and reads the same file as the other nodes.
        """
        from filelock import FileLock

        from datasets.storage.shared_cache import beton_store

        store = beton_store()
        if store is None:
            return None
        shared = self._usable(split, [loc.name for loc in store.entries(self._pattern(split), kind="file")])
        shared = {r: name for r, name in shared.items() if r >= resolution}
        if not shared:
            return None
        name = shared[min(shared)]
        path = cache_root() / "betons" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(path) + ".lock"):  # the lock a conversion of this file would take
            if path.exists():
                return path
            check_free_space(path.parent, (store / name).total_size())  # as before a conversion
            if fetch(path):
                return path
        return None

    def beton(self, split: str, resolution: int | None = None, num_workers: int = 1) -> Path:
        """The split's `.beton`: the smallest stored one of at least `resolution` (on this node, else in
        the shared store), else written now.

        A new file is stored at `max_resolution` (option, default 512); asking for more is an error.
        """
        self.check_split(split)
        resolution = resolution or self.max_resolution
        stored = {r: p for r, p in self.stored_betons(split).items() if r >= resolution}
        if stored:
            return stored[min(stored)]
        shared = self._shared_beton(split, resolution)
        if shared is not None:
            return shared
        if resolution > self.max_resolution:
            raise SourceError(
                f"{self.name}/{split}: {resolution} px requested but the images are stored at most "
                f"{self.max_resolution} px; prepare with --max-resolution {resolution} (or source option "
                f"max_resolution={resolution})"
            )
        path = beton_path(self.name, split, self.max_resolution, self.content_hash(split),
                          storage_tag(self.stored_jpeg_fraction))
        self._write(split, self.max_resolution, path, num_workers)
        return path

    @property
    def stored_jpeg_fraction(self) -> float:
        """The fraction of images a new file stores as JPEG."""
        return DEFAULT_JPEG_FRACTION if self.jpeg_fraction is None else self.jpeg_fraction

    def images(self, split: str, resolution: int) -> ImageFiles:
        rows = self.kept(split)
        scan = self.scans[split]
        return ImageFiles(self.root, [scan.files[i] for i in rows], scan.labels[rows], resolution, self.square)

    def _write(self, split: str, resolution: int, path: Path, num_workers: int) -> None:
        from filelock import FileLock

        log = self.skipped_log(split)
        log.parent.mkdir(parents=True, exist_ok=True)
        # Held while converting: a labels() elsewhere (another trial of the node) waits for this pass's
        # log instead of checking the same images apart. kept() takes this lock only when the log is missing.
        with FileLock(str(log) + ".lock"):
            self._convert(split, resolution, path, num_workers, log)

    def _convert(self, split: str, resolution: int, path: Path, num_workers: int, log: Path) -> None:
        from PIL import Image

        checked = log.exists() or fetch(log)  # else this conversion is the check: every listed image, one decode each
        scan = self.scans[split]
        rows = self.kept(split, num_workers) if checked else np.arange(len(scan.files))
        files = [scan.files[i] for i in rows]
        sizes = np.clip(scan.sizes[rows], 0, None)
        fraction = self.stored_jpeg_fraction
        # JPEG at quality 90 takes ~0.25-0.35 bytes per pixel; originals smaller than the stored size stay about as
        # large. Raw: 3 bytes per stored pixel, at most RAW_PER_FILE_BYTE times the original file.
        as_jpeg = min(int(sizes.sum()), len(rows) * resolution**2 // 3)
        as_raw = int(np.minimum(sizes * RAW_PER_FILE_BYTE, 3 * resolution**2).sum())
        estimate = int(fraction * as_jpeg + (1 - fraction) * as_raw) + len(rows) * 256
        skipped = f"{self.num_skipped(split)} skipped" if checked else "unreadable ones skipped and listed"
        print(f"converting {self.name}/{split}: {len(rows)} images ({skipped}), "
              f"{f'{resolution}x{resolution} px' if self.square else f'longer side <= {resolution} px'}, "
              f"{_storage_words(fraction)} -> {path}", file=sys.stderr)
        hint = (f", or store every image as JPEG (~{as_jpeg / 2**20:.0f} MiB, slower to read): "
                f"python -m datasets prepare {self.name} --data-root DIR --jpeg-fraction 1" if fraction < 1 else "")
        failures = path.with_name(f".{path.name}.failed-{os.getpid()}")
        failures.unlink(missing_ok=True)
        Image.preinit()  # the JPEG/PNG plugins, imported once here rather than in every forked writer process

        def drop_failed(written: Path) -> None:
            """Before the rename: remove the rows that failed to decode and record them in the log."""
            failed = {}
            if failures.exists():
                for line in failures.read_text().splitlines():
                    row, file, reason = line.split("\t", 2)
                    failed[int(row)] = f"{file}\t{reason}" + (" (after the check)" if checked else "")
            if failed:
                drop_rows(written, sorted(failed))
            if failed or not checked:
                self._record_skipped(split, log, [failed[r] for r in sorted(failed)], checked)

        try:
            ensure_beton(path, lambda: ImageFiles(self.root, files, scan.labels[rows], resolution, self.square, failures,
                                                  fraction),
                         estimate, max_resolution=resolution, num_workers=num_workers, jpeg_fraction=fraction,
                         jpeg_quality=90, check=drop_failed, space_hint=hint)
        finally:
            failures.unlink(missing_ok=True)

    def _record_skipped(self, split: str, log: Path, failed: list[str], checked: bool) -> None:
        """Write the skipped log: `failed` ("path\treason" lines) added to what it listed (when `checked`)."""
        lines = [line for line in log.read_text().splitlines() if line and not line.startswith("#")] if checked else []
        lines += failed
        total = len(self.scans[split].files)
        # written before the .beton is renamed into place: a file never exists without its rows' record
        atomic_write(log, f"# {len(lines)} of {total} images of {self.name}/{split} under {self.root} are unreadable and "
                          "skipped (path, reason)\n" + "".join(f"{line}\n" for line in lines))
        self.__dict__.get("_kept", {}).pop(split, None)
        if failed:
            when = " since the check" if checked else ""
            print(f"{self.name}/{split}: skipped {len(failed)} unreadable images{when}, listed in {log}", file=sys.stderr)
        if split in self.every_class_in:
            self.kept(split)  # warns about classes left without images

    def describe(self) -> dict:
        out = super().describe()
        out["root"] = str(self.root)
        out["skipped_images"] = {s: self.num_skipped(s) for s in self.splits}
        return out
