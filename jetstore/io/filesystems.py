"""fsspec filesystems for URLs, and the two reads every part needs: one bounded object, a folder's listing."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import fsspec
import fsspec.asyn

from jetstore.documents import DocumentError, read_regular


def filesystem(url: str, options: Mapping[str, Any] | None = None) -> tuple[fsspec.AbstractFileSystem, str]:
    """The fsspec filesystem and path (no protocol, no trailing slash) for ``url``. The filesystem gets a copy
    of ``options``: botocore rewrites the retry settings it is given, and changed options would make the next
    call another filesystem, with another client."""
    fs, path = fsspec.core.url_to_fs(url, **copy.deepcopy(dict(options or {})))
    return fs, path.rstrip("/")


def read_object(fs: fsspec.AbstractFileSystem, path: str, limit: int) -> bytes:
    """The bytes of one file or object of at most ``limit`` bytes (a :class:`~jetstore.documents.DocumentError`
    when larger, or when a local path is not a regular file: a FIFO never blocks); ``FileNotFoundError`` when
    absent. A remote object's size is asked first (an object too large is never fetched), then at most
    ``limit + 1`` of its bytes are read (it may have grown meanwhile)."""
    if "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)):
        return read_regular(path, limit)
    if fs.size(path) > limit:
        raise DocumentError(f"is larger than {limit:,} bytes")
    data = fs.cat_file(path, start=0, end=limit + 1)
    if len(data) > limit:
        raise DocumentError(f"is larger than {limit:,} bytes")
    return data


def list_files(fs: fsspec.AbstractFileSystem, path: str) -> dict[str, int]:
    """Relative path → size for every file under ``path`` (a single file maps '' → size)."""
    if not fs.isdir(path):
        return {"": fs.size(path)}
    found = fs.find(path, detail=True)
    prefix = path.rstrip("/") + "/"
    return {name[len(prefix):]: int(info["size"]) for name, info in found.items()}
