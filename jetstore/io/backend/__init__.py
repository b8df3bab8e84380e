"""Storage backends: one interface (``base.py``), local disk (``local.py``), S3 and read-only fsspec
(``objects.py``). :func:`open_backend` picks one by the URL's protocol."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jetstore.io import filesystems
from jetstore.io.backend.base import Backend, Capabilities, RangeReader, Token, Versioned, check_key
from jetstore.io.backend.local import LocalBackend
from jetstore.io.backend.objects import FsspecBackend, S3Backend
from jetstore.io.locations import protocol

BACKENDS: dict[str, type[Backend]] = {"file": LocalBackend, "local": LocalBackend, "s3": S3Backend,
                                      "s3a": S3Backend}


def open_backend(url: str, options: Mapping[str, Any] | None = None) -> Backend:
    """The backend of the dataset root ``url`` (storage options as for fsspec)."""
    fs, root = filesystems.filesystem(url, options)
    return backend_of(fs, root, url, options)


def capabilities_of(url: str) -> Capabilities:
    """What the backend of ``url`` can do, without opening it."""
    return BACKENDS.get(protocol(url), FsspecBackend).capabilities


def backend_of(fs: Any, root: str, url: str | None = None, options: Mapping[str, Any] | None = None) -> Backend:
    """The backend for an fsspec filesystem already open at ``root``."""
    protocols = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    kind = next((BACKENDS[p] for p in protocols if p in BACKENDS), FsspecBackend)
    return kind(url or root, fs, root, options)


def write_bytes_atomic(fs: Any, path: str, data: bytes) -> None:
    """Write a small object at ``path`` of ``fs`` so that readers see the old or the new content, never a part
    (through the backend of its folder)."""
    folder, _, name = path.rstrip("/").rpartition("/")
    backend_of(fs, folder).put(name, data)


__all__ = ["BACKENDS", "Backend", "Capabilities", "FsspecBackend", "LocalBackend", "RangeReader", "S3Backend",
           "Token", "Versioned", "backend_of", "capabilities_of", "check_key", "open_backend",
           "write_bytes_atomic"]
