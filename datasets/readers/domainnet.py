"""`domainnet`: DomainNet (345 classes in six domains), as a pre-training source or a target.

Layout (`--data-root` holds `domainnet/`, or is that folder), as the DomainNet download unpacks:

    <root>/domainnet/<domain>/<class>/<domain>_<nnn>_<nnnnnn>.jpg
    <root>/domainnet/<domain>_train.txt   <root>/domainnet/<domain>_test.txt
        lines: "<domain>/<class>/<file>.jpg <label>"

As a source (default): splits train and test over the selected `domains` (by default every one of
the six whose split files are present);
pre-training is evaluated on "test" (`holdout_split`), the split DomainNet ships. `domains(split)`
gives each row's domain. As a fine-tuning target, `domain="sketch"` (say) makes the ID splits that
domain's train / test files and the OOD split the test files of the other selected domains.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from datasets.readers.image_files import ImageFileSource, Scan, cached_scan, file_sizes, find_dataset_dir
from datasets.sources import SourceError, register_source

DOMAINNET_DOMAINS = ("clipart", "infograph", "painting", "quickdraw", "real", "sketch")
DOMAINNET_DOWNLOAD = ("DomainNet (cleaned version) from ai.bu.edu/M3SDA: each <domain>.zip and its "
                      "<domain>_train.txt / <domain>_test.txt")


def read_split_file(path) -> tuple[list[str], list[int]]:
    files, labels = [], []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.rsplit(maxsplit=1)
        if len(parts) != 2 or not parts[1].isdigit():
            raise SourceError(f"{path}:{n}: expected '<domain>/<class>/<file>.jpg <label>', got '{line.strip()}'; "
                              "re-download the split file")
        files.append(parts[0])
        labels.append(int(parts[1]))
    return files, labels


@register_source("domainnet")
def domainnet(data_root=None, domains: tuple[str, ...] | list[str] | None = None, domain: str | None = None,
              max_resolution: int | None = None) -> ImageFileSource:
    """DomainNet over `domains` (default: every domain whose split files are present; they are recorded
    in the options); with `domain`, a target with that domain as ID and the others as OOD."""
    if domains is None:
        present = [d for d in DOMAINNET_DOMAINS if data_root is not None and any(
            (Path(data_root).expanduser() / sub / f"{d}_train.txt").exists() for sub in ("domainnet", ""))]
        domains = tuple(present) or DOMAINNET_DOMAINS  # none present: the error below names all six
    domains = tuple(domains)
    bad = [d for d in domains + ((domain,) if domain else ()) if d not in DOMAINNET_DOMAINS]
    if bad:
        raise SourceError(f"domainnet: unknown domain '{bad[0]}'; domains: {', '.join(DOMAINNET_DOMAINS)}")
    if domain and domain not in domains:
        domains = domains + (domain,)
    markers = tuple(f"{d}_{s}.txt" for d in domains for s in ("train", "test"))
    root = find_dataset_dir(data_root, "domainnet", markers, "DomainNet", DOMAINNET_DOWNLOAD)

    def build():
        per = {}
        names: dict[int, str] = {}
        for d in domains:
            for s in ("train", "test"):
                files, labels = read_split_file(root / f"{d}_{s}.txt")
                for f, y in zip(files, labels):
                    names.setdefault(y, f.split("/")[1] if f.count("/") >= 2 else f"class{y}")
                per[d, s] = Scan(files, np.asarray(labels, dtype=np.int64), file_sizes(root, files, root / f"{d}_{s}.txt"),
                                 np.array([d] * len(files), dtype=object))
        num_classes = max(names) + 1
        return {"classes": [names.get(y, f"class{y}") for y in range(num_classes)], "per": per}

    keys = [root / m for m in markers] + [root / d for d in domains if (root / d).is_dir()]
    scan = cached_scan("domainnet", keys, build)

    def join(parts: list[Scan]) -> Scan:
        return Scan(sum((p.files for p in parts), []), np.concatenate([p.labels for p in parts]),
                    np.concatenate([p.sizes for p in parts]), np.concatenate([p.domains for p in parts]))

    per = scan["per"]
    options = {"domains": list(domains), "domain": domain, "max_resolution": max_resolution}
    if domain is None:
        scans = {s: join([per[d, s] for d in domains]) for s in ("train", "test")}
        return ImageFileSource(name="domainnet", options=options, splits=("train", "test"), classes=scan["classes"],
                               eval_splits={"test": "test"}, native_resolution=224, holdout_split="test",
                               root=root, scans=scans)
    others = [d for d in domains if d != domain]
    if not others:
        raise SourceError(f"domainnet: domain='{domain}' as target needs other domains for OOD; add some to domains=")
    scans = {"train": per[domain, "train"], "id_test": per[domain, "test"],
             "test": join([per[d, "test"] for d in others])}
    return ImageFileSource(name=f"domainnet-{domain}", options=options, splits=("train", "id_test", "test"),
                           classes=scan["classes"], eval_splits={"id": "id_test", "ood": "test"},
                           native_resolution=224, holdout_split="test", root=root, scans=scans)
