"""A user's split shift, copied into its sweep for the report (`support_shift`'s `before_report` step).

`support_shift.py split` wrote `<prefix>.split.csv` (one row per shifted image: `file`, density ratio
`ratio`, `probability`, `out_of_support`) and, beside it, `<prefix>.features.npz` (features, the
shifted images' thumbnails and the file lists). The report reads only the sweep directory (which may
be an `s3://` URI read on another machine), so for each `shift_folders` target this step writes

    <sweep>/natural/<target>.split.csv         the split file the cells were evaluated on, byte for byte
    <sweep>/natural/<target>.thumbnails.npz    `thumbnails` (n_shift, 32, 32, 3 uint8) in the split file's
                                               row order, `files`, and `meta` (JSON: encoder, resolution)

`analysis.user_split` reads them: the split file's ratios rank the images of the report's grid, so the
shift is never split a second time. Without the features file beside the split file the thumbnails
are not written, and the report says so in one line.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
from pathlib import Path

import numpy as np

from engine.split_command import features_beside
from datasets.storage.location import Location


def split_files(directory: Path | str | Location, target: str) -> tuple[Location, Location]:
    """(split file, thumbnails file) of `target` in a sweep directory."""
    natural = Location.of(directory) / "natural"
    return natural / f"{target}.split.csv", natural / f"{target}.thumbnails.npz"


def _thumbnails(features: Path, files: list[str]) -> dict[str, np.ndarray] | str:
    """The arrays of the thumbnails file, or why there are none (one line)."""
    if not features.is_file():
        return f"{features} is missing beside the split file"
    with np.load(features) as stored:
        meta = json.loads(str(stored["meta"]))
        thumbnails = stored["thumbnails"]
    position = {f: i for i, f in enumerate(meta.get("shifted_files", []))}
    if len(position) != len(thumbnails) or set(position) != set(files):
        return f"{features} lists other shifted images than the split file (written by another split)"
    return {"thumbnails": thumbnails[[position[f] for f in files]], "files": np.asarray(files),
            "meta": np.asarray(json.dumps({k: meta.get(k) for k in ("encoder", "resolution")}))}


def write_user_splits(spec, directory: Path | str | Location) -> list[Location]:
    """For each `shift_folders` target of `spec`, its split file and its shifted images' thumbnails as
    `<sweep>/natural/<target>.split.csv` and `.thumbnails.npz`; prints one line for a target whose
    thumbnails cannot be written. A split file changed since the cells were defined is not copied."""
    written = []
    for target in spec.all_targets():
        if target.registered != "shift_folders":
            continue
        split = Path(target.options["split"])
        split_out, thumbs_out = split_files(directory, target.name)
        for old in (split_out, thumbs_out):  # never a figure from an earlier run's files
            old.delete()
        data = split.read_bytes()
        if hashlib.sha256(data).hexdigest() != target.options.get("split_sha256"):
            print(f"{target.name}: {split} changed since this sweep's cells were defined; the report shows no "
                  "split figure for it (run the sweep again to evaluate on the new split)")
            continue
        split_out.write_bytes(data)
        written.append(split_out)
        files = [row["file"] for row in csv.DictReader(io.StringIO(data.decode()))]
        arrays = _thumbnails(features_beside(split), files)
        if isinstance(arrays, str):
            print(f"{target.name}: no image grid in the report: {arrays} (support_shift.py split writes both)")
            continue
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)
        thumbs_out.write_bytes(buffer.getvalue())
        written.append(thumbs_out)
    return written
