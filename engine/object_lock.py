"""A lock on object storage (S3 or S3-compatible): one object, created and renewed with conditional writes.

S3 has no file locks, but it has conditional writes (`If-None-Match: *` creates an object only if it
does not exist; `If-Match: <etag>` replaces it only if nobody else changed it since). `LeaseLock`
builds a lease on them:

- **acquire**: create the lock object with `If-None-Match: *`; of two clients racing, the store lets
  exactly one succeed.
- **hold**: a background thread rewrites the object every `lease_s / 4` seconds with `If-Match` on
  the etag it last wrote. The object's `Last-Modified` is therefore at most `lease_s / 4` old
  while the holder lives.
- **expiry**: a lock whose object has not been rewritten for `lease_s` seconds, measured on the
  store's own clock (the `Date` of its answer minus the object's `Last-Modified`: no two machines'
  clocks are compared; both have whole seconds, so one second is added), belongs to a holder that
  is gone; it is taken over with `If-Match` on the etag that was read, so of two clients taking
  over, one wins.
- **lost**: a holder whose renewal finds another etag (it was cut off longer than its lease, and
  someone took over) stops renewing and calls its `on_lost` callback; it must stop writing.
- **release**: delete the object if it still holds our etag.

The store must support conditional writes (AWS S3 since 2024, MinIO, Ceph RGW, moto); a store
that ignores the headers would let two holders in, so `LeaseLock.check_store` proves the refusal
once per bucket before any lock is trusted.
"""
from __future__ import annotations

import email.utils
import json
import threading
import time
from typing import Callable

from datasets.storage.location import Location

__all__ = ["LEASE_S", "LeaseLock", "LockHeld", "StoreWithoutConditionalWrites"]

LEASE_S = 120.0   # a holder silent this long (store clock) is gone; it renews every LEASE_S / 4
CLOCK_RESOLUTION_S = 1.0   # S3's Date and Last-Modified have whole seconds: a lease expires this much later


class LockHeld(Exception):
    """The lock object exists and its lease is current; `holder` is what its owner wrote in it."""

    def __init__(self, holder: dict, etag: str, age_s: float):
        super().__init__(f"held by {holder}")
        self.holder, self.etag, self.age_s = holder, etag, age_s


class StoreWithoutConditionalWrites(RuntimeError):
    """The object store accepted a write that a conditional header should have refused."""


def _client():
    import boto3  # honours AWS_ENDPOINT_URL and the usual credential chain

    return boto3.client("s3")


def _refused(error) -> bool:
    return error.response.get("Error", {}).get("Code") in ("PreconditionFailed", "ConditionalRequestConflict", "412", "409")


_checked_buckets: set[str] = set()


class LeaseLock:
    """A lease on the object at `location` (an `s3://` Location)."""

    def __init__(self, location: Location, info: dict, lease_s: float = LEASE_S,
                 on_lost: Callable[[str], None] | None = None):
        self.location, self.info, self.lease_s = location, dict(info), float(lease_s)
        self.bucket, self.key = location.bucket_and_key
        self.on_lost = on_lost
        self.etag: str | None = None
        self.lost: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._write_lock = threading.Lock()
        self._s3 = _client()

    # ---- the store
    def check_store(self) -> None:
        """Prove once per bucket that the store refuses a conditional create of an existing object."""
        if self.bucket in _checked_buckets:
            return
        from botocore.exceptions import ClientError

        probe = f"{self.key}.conditional-write-probe-{time.time_ns()}"
        self._s3.put_object(Bucket=self.bucket, Key=probe, Body=b"1", IfNoneMatch="*")
        try:
            self._s3.put_object(Bucket=self.bucket, Key=probe, Body=b"2", IfNoneMatch="*")
        except ClientError as error:
            if not _refused(error):
                raise
        else:
            raise StoreWithoutConditionalWrites(
                f"s3://{self.bucket}: the store ignored a conditional write (If-None-Match), so it cannot hold a "
                "lock; use a store that supports conditional writes (AWS S3, MinIO, Ceph) or a shared filesystem")
        finally:
            self._s3.delete_object(Bucket=self.bucket, Key=probe)
        _checked_buckets.add(self.bucket)

    def _body(self) -> bytes:
        return json.dumps({**self.info, "lease_s": self.lease_s}, indent=1).encode()

    def read(self) -> tuple[dict, str, float] | None:
        """(what the holder wrote, its etag, seconds since it was last written on the store's clock), or None."""
        from botocore.exceptions import ClientError

        try:
            answer = self._s3.get_object(Bucket=self.bucket, Key=self.key)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise
        body = answer["Body"].read()
        now = email.utils.parsedate_to_datetime(answer["ResponseMetadata"]["HTTPHeaders"]["date"])
        age = (now - answer["LastModified"]).total_seconds()
        try:
            holder = json.loads(body)
        except ValueError:
            holder = {"unreadable": body[:80].decode(errors="replace")}
        return holder, answer["ETag"], age

    # ---- acquire, renew, release
    def try_acquire(self) -> dict | None:
        """Take the lock, or raise `LockHeld` (a current lease). An expired lease is taken over: then
        what its holder had written is returned (None when the lock was free)."""
        from botocore.exceptions import ClientError

        self.check_store()
        while True:
            try:
                answer = self._s3.put_object(Bucket=self.bucket, Key=self.key, Body=self._body(), IfNoneMatch="*")
                self._held(answer["ETag"])
                return None
            except ClientError as error:
                if not _refused(error):
                    raise
            current = self.read()
            if current is None:
                continue  # released between our two calls: try to create it again
            holder, etag, age = current
            if age <= float(holder.get("lease_s", self.lease_s)) + CLOCK_RESOLUTION_S:
                raise LockHeld(holder, etag, age)
            if self.take_over(etag):
                return holder

    def take_over(self, etag: str) -> bool:
        """Replace the lock object if it still holds `etag`; False when someone else changed it first."""
        from botocore.exceptions import ClientError

        try:
            answer = self._s3.put_object(Bucket=self.bucket, Key=self.key, Body=self._body(), IfMatch=etag)
        except ClientError as error:
            if _refused(error) or error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return False
            raise
        self._held(answer["ETag"])
        return True

    def _held(self, etag: str) -> None:
        self.etag, self.lost = etag, None
        self._stop.clear()
        self._thread = threading.Thread(target=self._renew_loop, name=f"lease {self.key}", daemon=True)
        self._thread.start()

    def write(self, info: dict) -> None:
        """Replace what the lock says about its holder (also renews it)."""
        self.info = dict(info)
        self.renew()

    def renew(self) -> bool:
        """Rewrite the object under our etag; on refusal the lock is lost (`on_lost` is called once)."""
        from botocore.exceptions import ClientError

        with self._write_lock:
            if self.etag is None or self.lost:
                return False
            try:
                answer = self._s3.put_object(Bucket=self.bucket, Key=self.key, Body=self._body(), IfMatch=self.etag)
            except ClientError as error:
                if not (_refused(error) or error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404")):
                    raise
                self.lost = (f"the lock s3://{self.bucket}/{self.key} was taken over by another client after this one "
                             f"did not renew it for {self.lease_s:.0f} s")
                self._stop.set()
            else:
                self.etag = answer["ETag"]
                return True
        if self.on_lost is not None:
            self.on_lost(self.lost)
        return False

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.lease_s / 4):
            try:
                self.renew()
            except Exception as error:  # noqa: BLE001 - a store unreachable for a moment: retry next period
                print(f"warning: could not renew s3://{self.bucket}/{self.key}: {type(error).__name__}: {error}")

    def release(self) -> None:
        """Stop renewing and delete the object if it is still ours."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._write_lock:
            if self.etag is None or self.lost:
                return
            current = self.read()
            if current is not None and current[1] == self.etag:
                self._s3.delete_object(Bucket=self.bucket, Key=self.key)
            self.etag = None
