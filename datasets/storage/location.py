"""Where sweeps and pre-trained models live: a local (or shared) path, or an `s3://` URI.

`Location` is one place in that storage, read and written through a pyarrow filesystem, the way
Ray Tune reaches its own `storage_path`: local paths and S3 take the same code path. An
S3-compatible store (MinIO, Ceph, moto, ...) is reached through the standard `AWS_ENDPOINT_URL`
environment variable, which pyarrow, boto3 and therefore Tune all honour; credentials come from
the environment or the instance role (`AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, `AWS_PROFILE`,
an attached IAM role), never from a file in this repository.

Writes are whole-file: locally through the project's atomic-write helper, on S3 as one PUT (S3
makes an object visible whole or not at all). Locks that need more than that live in
`engine.object_lock` (S3) and `filelock` (local paths).
"""
from __future__ import annotations

import fnmatch
import functools
import io
import os
import posixpath
from dataclasses import dataclass
from pathlib import Path

from datasets.storage.atomic import atomic_write

__all__ = ["Location", "StorageError", "SCHEMES"]

SCHEMES = ("s3",)   # object stores a sweep can live on; anything else with "://" is refused


class StorageError(ValueError):
    """A storage path or URI that cannot be used; one line naming it and what would work."""


@functools.lru_cache(maxsize=8)
def _filesystem(scheme_and_bucket: str):
    """One pyarrow filesystem per bucket and process (it holds a connection pool)."""
    import pyarrow.fs

    filesystem, _ = pyarrow.fs.FileSystem.from_uri(scheme_and_bucket)
    return filesystem


@functools.lru_cache(maxsize=1)
def _local_filesystem():
    import pyarrow.fs

    return pyarrow.fs.LocalFileSystem()


@dataclass(frozen=True)
class Location:
    """A file or directory: an absolute local path, or `s3://bucket/key` (no trailing slash)."""

    uri: str

    @staticmethod
    def of(value: str | os.PathLike | Location) -> Location:
        """Parse a `--storage-path`-like value; `StorageError` for a scheme other than `s3://`."""
        if isinstance(value, Location):
            return value
        text = str(value)
        if "://" in text and not text.startswith("/"):
            scheme, rest = text.split("://", 1)
            if scheme not in SCHEMES:
                raise StorageError(f"{text}: storage URIs of scheme '{scheme}://' are not supported; use a local or "
                                   "shared filesystem path, or s3://bucket/prefix (any S3-compatible store through "
                                   "AWS_ENDPOINT_URL)")
            rest = posixpath.normpath(rest.strip("/")) if rest.strip("/") else ""
            if not rest:
                raise StorageError(f"{text}: name a bucket, e.g. s3://my-bucket/sweeps")
            return Location(f"{scheme}://{rest}")
        return Location(str(Path(text).expanduser().resolve()))

    # ---- names
    @property
    def remote(self) -> bool:
        return "://" in self.uri

    @property
    def name(self) -> str:
        return posixpath.basename(self.uri)

    @property
    def parent(self) -> Location:
        if self.remote:
            scheme, rest = self.uri.split("://", 1)
            return Location(f"{scheme}://{posixpath.dirname(rest) or rest}")
        return Location(str(Path(self.uri).parent))

    def __truediv__(self, name: str) -> Location:
        return Location(posixpath.join(self.uri, name) if self.remote else str(Path(self.uri) / name))

    def with_name(self, name: str) -> Location:
        return self.parent / name

    def __str__(self) -> str:
        return self.uri

    @property
    def path(self) -> Path:
        """The local path; only for local locations (a bug to ask of an S3 one)."""
        if self.remote:
            raise TypeError(f"{self.uri} is not a local path")
        return Path(self.uri)

    @property
    def bucket_and_key(self) -> tuple[str, str]:
        """(bucket, key) of an S3 location."""
        rest = self.uri.split("://", 1)[1]
        bucket, _, key = rest.partition("/")
        return bucket, key

    # ---- the filesystem
    def fs(self):
        """(pyarrow filesystem, path in it)."""
        if not self.remote:
            return _local_filesystem(), self.uri
        scheme, rest = self.uri.split("://", 1)
        return _filesystem(f"{scheme}://{rest.split('/', 1)[0]}"), rest

    def _info(self):
        filesystem, path = self.fs()
        return filesystem.get_file_info(path)

    def exists(self) -> bool:
        import pyarrow.fs

        return self._info().type != pyarrow.fs.FileType.NotFound

    def is_dir(self) -> bool:
        import pyarrow.fs

        return self._info().type == pyarrow.fs.FileType.Directory

    def is_file(self) -> bool:
        import pyarrow.fs

        return self._info().type == pyarrow.fs.FileType.File

    def entries(self, pattern: str = "*", kind: str = "any") -> list[Location]:
        """Direct children whose name matches `pattern` (fnmatch), sorted; `kind`: "any", "dir" or "file"."""
        import pyarrow.fs

        filesystem, path = self.fs()
        wanted = {"dir": (pyarrow.fs.FileType.Directory,), "file": (pyarrow.fs.FileType.File,),
                  "any": (pyarrow.fs.FileType.Directory, pyarrow.fs.FileType.File)}[kind]
        infos = filesystem.get_file_info(pyarrow.fs.FileSelector(path, allow_not_found=True))
        return sorted((self / i.base_name for i in infos if i.type in wanted and fnmatch.fnmatch(i.base_name, pattern)),
                      key=lambda loc: loc.uri)

    def total_size(self) -> int:
        """Bytes of the file, or of every file below the directory."""
        import pyarrow.fs

        filesystem, path = self.fs()
        info = filesystem.get_file_info(path)
        if info.type != pyarrow.fs.FileType.Directory:
            return int(info.size or 0)
        below = filesystem.get_file_info(pyarrow.fs.FileSelector(path, recursive=True, allow_not_found=True))
        return sum(int(i.size or 0) for i in below if i.type == pyarrow.fs.FileType.File)

    # ---- whole-file reads and writes
    def read_bytes(self) -> bytes:
        """The file's bytes; FileNotFoundError when it is missing."""
        if not self.remote:
            return Path(self.uri).read_bytes()
        filesystem, path = self.fs()
        try:
            with filesystem.open_input_stream(path) as f:
                return f.read()
        except FileNotFoundError:
            raise
        except OSError as error:
            if not self.exists():
                raise FileNotFoundError(self.uri) from None
            raise error

    def read_text(self) -> str:
        return self.read_bytes().decode()

    def write_bytes(self, data: bytes) -> None:
        """Replace the file with `data`, whole (atomic locally; one PUT on S3)."""
        if not self.remote:
            atomic_write(self.uri, data)
            return
        filesystem, path = self.fs()
        with filesystem.open_output_stream(path) as f:
            f.write(data)

    def write_text(self, text: str) -> None:
        self.write_bytes(text.encode())

    def save_torch(self, obj) -> None:
        """`torch.save(obj)` to the file, whole (atomic locally, written straight to its temporary file:
        no copies of a training state in memory; one PUT on S3)."""
        import torch

        if not self.remote:
            atomic_write(self.uri, lambda tmp: torch.save(obj, tmp))
            return
        buffer = io.BytesIO()
        torch.save(obj, buffer)
        self.write_bytes(buffer.getvalue())

    def load_torch(self, map_location="cpu"):
        import torch

        source = self.uri if not self.remote else io.BytesIO(self.read_bytes())
        return torch.load(source, map_location=map_location, weights_only=True)

    def mkdir(self) -> None:
        """Make the directory (local); object stores have no directories to make."""
        if not self.remote:
            Path(self.uri).mkdir(parents=True, exist_ok=True)

    def delete(self) -> None:
        """Remove the file if it exists."""
        if not self.remote:
            Path(self.uri).unlink(missing_ok=True)
            return
        filesystem, path = self.fs()
        try:
            filesystem.delete_file(path)
        except FileNotFoundError:
            pass

    def remove(self) -> None:
        """Remove the file, or the directory with everything below it."""
        if self.is_dir():
            filesystem, path = self.fs()
            filesystem.delete_dir(path)
        else:
            self.delete()

    def move_to(self, target: Location) -> None:
        """Move this directory to `target` (a rename locally; a copy, then a delete, on S3)."""
        if not self.remote:
            Path(self.uri).rename(target.uri)
            return
        import pyarrow.fs

        filesystem, path = self.fs()
        _, destination = target.fs()
        pyarrow.fs.copy_files(path, destination, source_filesystem=filesystem, destination_filesystem=filesystem)
        filesystem.delete_dir(path)

    def upload(self, local: Path) -> None:
        """Copy the local directory `local` into this one (files already here are replaced)."""
        import pyarrow.fs

        filesystem, path = self.fs()
        pyarrow.fs.copy_files(str(local), path, source_filesystem=_local_filesystem(), destination_filesystem=filesystem)

    def upload_file(self, local: Path) -> None:
        """Copy the local file `local` to this location, streamed (large files never sit in memory); a
        reader never sees part of it (S3 shows an upload when it completes; locally it is renamed into place)."""
        import pyarrow.fs

        if not self.remote:
            atomic_write(self.uri, lambda tmp: pyarrow.fs.copy_files(str(local), str(tmp)))
            return
        filesystem, path = self.fs()
        pyarrow.fs.copy_files(str(local), path, source_filesystem=_local_filesystem(), destination_filesystem=filesystem)

    def download_file(self, local: Path) -> None:
        """Copy this file to the local path `local`, streamed, renamed into place when complete."""
        import pyarrow.fs

        filesystem, path = self.fs()
        atomic_write(local, lambda tmp: pyarrow.fs.copy_files(path, str(tmp), source_filesystem=filesystem,
                                                              destination_filesystem=_local_filesystem()))
