"""The storage interface of a dataset root, in the manner of zarr-python v3's ``abc/store.py``: one abstract
store with declared capabilities, addressed by keys relative to the root.

Keys are ``/``-separated and checked (:func:`check_key`): no empty, ``.`` or ``..`` segment, no backslash, no
leading ``/``. So nothing a backend reads, writes or deletes lies outside its root; the local backend also
refuses keys that resolve outside the root through a symbolic link.

Conditional writes carry a :data:`Token`, the version of an object as the storage knows it (its S3 ETag, or
the xxh3 digest of a local file's bytes): :meth:`Backend.put_if_match` replaces an object only while it
still has the token read before, :meth:`Backend.put_if_absent` creates one only where there is none. They
are what the write lease and the manifest are fenced with (``dataset/lease.py``, ``dataset/writer.py``).
"""

from __future__ import annotations

import builtins
import contextlib
import re
import shutil
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from jetstore.errors import StorageError

Token = str
Range = tuple[int, int]
BAD_SEGMENT = re.compile(r"^\.{1,2}$")


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do (callers branch on these, never on the kind of storage)."""

    writes: bool  # put, publish, delete
    conditional_writes: bool  # put_if_absent / put_if_match decided by the storage itself
    cheap_requests: bool  # a request costs microseconds (local files): few reader threads suffice


@dataclass(frozen=True)
class Versioned:
    """An object's bytes and the token of exactly that version."""

    data: bytes
    token: Token


def check_key(key: str, where: str = "") -> str:
    """``key`` if it is a relative, normalised key; else a :class:`StorageError` (never a path outside)."""
    segments = key.split("/")
    if (not key or key.startswith("/") or "\\" in key or "\0" in key
            or any(not s or BAD_SEGMENT.match(s) for s in segments)):
        raise StorageError(f"{where or 'storage'}: refusing the path {key!r}: it is not inside the dataset")
    return key


class Backend(ABC):
    """The objects under one dataset root (``url``)."""

    capabilities: ClassVar[Capabilities]

    def __init__(self, url: str, fs: Any, root: str, options: Mapping[str, Any] | None = None):
        self.url, self.fs, self.root, self.options = url, fs, root.rstrip("/"), dict(options or {})

    def path(self, key: str = "") -> str:
        """The filesystem path of ``key`` (the root for '')."""
        return f"{self.root}/{check_key(key, self.url)}" if key else self.root

    # -- reading -------------------------------------------------------------------------------------------

    @abstractmethod
    def read(self, key: str) -> bytes:
        """The bytes of ``key``; :class:`FileNotFoundError` when absent."""

    @abstractmethod
    def read_versioned(self, key: str) -> Versioned | None:
        """The bytes of ``key`` with their token (one request: the two always belong together); None if absent."""

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def list(self, prefix: str = "") -> dict[str, int]:
        """Key → size of every object whose key starts with ``prefix`` (a folder needs its trailing '/')."""

    @abstractmethod
    def entries(self, folder: str = "") -> builtins.list[str]:
        """The names directly inside ``folder`` (objects and sub-folders)."""

    @abstractmethod
    def ranges(self, key: str, size: int) -> RangeReader:
        """A reader of byte ranges of ``key`` (``size`` bytes)."""

    # -- writing -------------------------------------------------------------------------------------------

    @abstractmethod
    def put(self, key: str, data: bytes) -> None:
        """Write a small object so that readers see the old or the new bytes, never a part."""

    @abstractmethod
    def put_if_absent(self, key: str, data: bytes) -> Token | None:
        """Create ``key`` only if nothing is there: its token, or None when something is."""

    @abstractmethod
    def put_if_match(self, key: str, data: bytes, token: Token) -> Token | None:
        """Replace ``key`` only while it still has ``token``: the new token, or None when it does not."""

    @abstractmethod
    def publish(self, local: Path, key: str) -> None:
        """Move the finished local file ``local`` to ``key`` (visible complete or not at all)."""

    @abstractmethod
    def delete(self, keys: Sequence[str]) -> None:
        """Delete these objects (absent ones are no error)."""

    @abstractmethod
    def delete_prefix(self, folder: str) -> None:
        """Delete the folder ``folder`` and everything in it (never the root itself)."""

    def prune(self, folder: str) -> None:  # noqa: B027 (object stores have no empty folders)
        """Remove ``folder`` if it is empty."""

    @contextlib.contextmanager
    def staging(self, folder: str) -> Iterator[Path]:
        """A scratch folder for one shard, removed afterwards: in the system temp folder unless the backend
        publishes by rename (then under ``folder`` of the root, on the same filesystem)."""
        directory = Path(tempfile.mkdtemp(prefix="jetstore-"))
        try:
            yield directory
        finally:
            shutil.rmtree(directory, ignore_errors=True)

    def check(self) -> None:  # noqa: B027 (nothing to check on local disk)
        """Raise a :class:`StorageError` unless the location can be used (before any work starts)."""

    def require_writes(self) -> None:
        if not (self.capabilities.writes and self.capabilities.conditional_writes):
            raise StorageError(f"{self.url}: jetstore writes datasets only to local disk or S3 (conditional "
                               "writes are needed to keep one writer at a time)")


class RangeReader(ABC):
    """Byte ranges of one object."""

    @abstractmethod
    def fetch(self, ranges: Sequence[Range]) -> list[bytes]: ...

    def close(self) -> None:  # noqa: B027 (optional)
        """Release what the reader holds."""
