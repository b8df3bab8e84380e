"""Datasets on object stores through fsspec: S3 (AWS, Ceph RGW, MinIO, moto) with conditional writes, and
any other fsspec filesystem read-only.

A single PUT is atomic (uploads above the part size go multipart, which is atomic too). Conditional PUTs
carry ``If-None-Match: *`` (create only) or ``If-Match: <ETag>`` (replace only that version), honoured by
AWS, Ceph RGW and moto. Ceph RGW compares ``If-Match`` with the bare ETag (a quoted one never matches), so
the token is sent without its quotes, which AWS and moto accept as well. A 412 answer to a retried request
can mean the first attempt succeeded: the object is read back before a write counts as refused.
"""

from __future__ import annotations

import builtins
import contextlib
from collections.abc import Sequence
from pathlib import Path

import fsspec.asyn

from jetstore.errors import StorageError
from jetstore.io import storage_errors
from jetstore.io.backend import presigned
from jetstore.io.backend.base import Backend, Capabilities, Range, RangeReader, Token, Versioned, check_key

MULTIPART_PART_SIZE = 64 << 20
REFUSED = (412, 404, 409)  # precondition failed; If-Match on a missing key (AWS, moto); a concurrent conditional PUT


class FsspecBackend(Backend):
    """Reading any fsspec filesystem (HTTP, GCS, memory, ...); jetstore writes datasets only where it can
    write conditionally."""

    capabilities = Capabilities(writes=False, conditional_writes=False, cheap_requests=False)

    def read(self, key: str) -> bytes:
        return self.fs.cat_file(self.path(key))

    def read_versioned(self, key: str) -> Versioned | None:
        try:
            data = self.read(key)
        except FileNotFoundError:
            return None
        return Versioned(data, "")

    def exists(self, key: str) -> bool:
        return self.fs.exists(self.path(key))

    def list(self, prefix: str = "") -> dict[str, int]:
        folder, _, start = prefix.rpartition("/")
        base = self.path(folder)
        try:
            found = self.fs.find(base, detail=True, **({"prefix": start} if start and self._prefix_listing else {}))
        except FileNotFoundError:
            return {}
        out = {}
        for name, info in found.items():
            key = name[len(self.root) + 1:] if name.startswith(self.root + "/") else name
            if key.startswith(prefix) and info.get("type", "file") == "file":
                out[key] = int(info["size"])
        return out

    _prefix_listing = False

    def entries(self, folder: str = "") -> builtins.list[str]:
        try:
            return sorted(name.rstrip("/").rsplit("/", 1)[-1] for name in self.fs.ls(self.path(folder), detail=False))
        except FileNotFoundError:
            return []

    def ranges(self, key: str, size: int) -> RangeReader:
        return _CatRangesReader(self.fs, self.path(key))

    def put(self, key: str, data: bytes) -> None:
        self.require_writes()

    def put_if_absent(self, key: str, data: bytes) -> Token | None:
        self.require_writes()
        return None  # not reached: require_writes refuses on a filesystem without conditional writes

    def put_if_match(self, key: str, data: bytes, token: Token) -> Token | None:
        self.require_writes()
        return None  # not reached, as above

    def publish(self, local: Path, key: str) -> None:
        self.require_writes()

    def delete(self, keys: Sequence[str]) -> None:
        self.require_writes()

    def delete_prefix(self, folder: str) -> None:
        self.require_writes()


class S3Backend(FsspecBackend):
    capabilities = Capabilities(writes=True, conditional_writes=True, cheap_requests=False)
    _prefix_listing = True  # one LIST request with a key prefix

    def ranges(self, key: str, size: int) -> RangeReader:
        """Plain HTTP GETs of a presigned URL (``presigned.py``: a fifth of botocore's CPU per request), unless
        the reads need request parameters a URL does not carry."""
        if presigned.usable(self.fs):
            return presigned.PresignedRanges(self.fs, self.path(key))
        return super().ranges(key, size)

    def read_versioned(self, key: str) -> Versioned | None:
        bucket, name = self._split(key)

        async def get() -> Versioned:
            response = await self.fs._call_s3("get_object", Bucket=bucket, Key=name)
            async with response["Body"] as body:
                return Versioned(await body.read(), response["ETag"].strip('"'))

        try:
            return fsspec.asyn.sync(self.fs.loop, get)
        except FileNotFoundError:
            return None

    def put(self, key: str, data: bytes) -> None:
        self.fs.pipe_file(self.path(key), data)

    def put_if_absent(self, key: str, data: bytes) -> Token | None:
        return self._conditional(key, data, IfNoneMatch="*")

    def put_if_match(self, key: str, data: bytes, token: Token) -> Token | None:
        return self._conditional(key, data, IfMatch=token)

    def publish(self, local: Path, key: str) -> None:
        self.fs.put_file(str(local), self.path(key), chunksize=MULTIPART_PART_SIZE)

    def delete(self, keys: Sequence[str]) -> None:
        paths = [self.path(check_key(key, self.url)) for key in keys]
        if paths:
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm(paths)

    def delete_prefix(self, folder: str) -> None:
        self.delete(sorted(self.list(f"{check_key(folder, self.url)}/")))

    def check(self) -> None:
        """One HEAD request on the bucket, whose failure says why (unreachable, no credentials, denied,
        missing) instead of "not found"."""
        bucket = self.root.split("/", 1)[0]
        try:
            fsspec.asyn.sync(self.fs.loop, self.fs._call_s3, "head_bucket", Bucket=bucket)
        except FileNotFoundError:
            where = storage_errors.endpoint(self.url, self.options)
            raise storage_errors.missing_bucket(self.url, bucket, where) from None
        except Exception as exc:
            error = storage_errors.failure(exc, self.url, self.options)
            raise (error or exc) from None

    def _conditional(self, key: str, data: bytes, **condition: str) -> Token | None:
        """One conditional PUT: the new ETag, or None when the storage refused it (and the object does not
        hold exactly ``data``, as after a retried request whose first attempt went through)."""
        try:
            response = self.fs.pipe_file(self.path(key), data, **condition)
        except (OSError, ValueError) as exc:
            if _status(exc) not in REFUSED and not isinstance(exc, FileNotFoundError):
                raise
            current = self.read_versioned(key)
            return current.token if current is not None and current.data == data else None
        return str(response["ETag"]).strip('"')

    def _split(self, key: str) -> tuple[str, str]:
        bucket, _, name = self.path(key).partition("/")
        if not name:
            raise StorageError(f"{self.url}: no bucket in the URL")
        return bucket, name


class _CatRangesReader(RangeReader):
    """One concurrent ``cat_ranges`` call (a GET with a Range header per range)."""

    def __init__(self, fs, path: str):
        self.fs, self.path = fs, path

    def fetch(self, ranges: Sequence[Range]) -> list[bytes]:
        return self.fs.cat_ranges([self.path] * len(ranges), [a for a, _ in ranges], [b for _, b in ranges],
                                  on_error="raise")


def _status(exc: BaseException) -> int | None:
    """The HTTP status behind an s3fs error (botocore keeps it on the cause), if any."""
    for error in (exc, exc.__cause__, exc.__context__):
        response = getattr(error, "response", None) or {}
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if status is not None:
            return status
    return None
