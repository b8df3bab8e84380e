"""Datasets on local (or network-mounted POSIX) disk.

Atomic writes are a temporary file, fsync and rename; an exclusive create links the finished temporary file
to its name (``link`` fails where a name exists); a conditional replace holds an exclusive ``flock`` of the
dataset while it compares the file's digest with the token and renames, so two writers' conditional
writes never interleave (``.jetstore.lock``, an empty file). A token is the xxh3-64 digest of a file's bytes.
"""

from __future__ import annotations

import builtins
import contextlib
import fcntl
import os
import shutil
import tempfile
import threading
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import xxhash

from jetstore.documents import DocumentError, open_regular
from jetstore.errors import StorageError
from jetstore.io.backend.base import Backend, Capabilities, Range, RangeReader, Token, Versioned, check_key
from jetstore.model import paths


def digest(data: bytes) -> Token:
    return xxhash.xxh3_64_hexdigest(data)


class LocalBackend(Backend):
    capabilities = Capabilities(writes=True, conditional_writes=True, cheap_requests=True)

    def path(self, key: str = "") -> str:
        """The path of ``key``, refused when it resolves outside the root (a symbolic link out of it)."""
        path = super().path(key)
        if key:
            root = os.path.realpath(self.root)
            if os.path.commonpath([root, os.path.realpath(path)]) != root:
                raise StorageError(f"{self.url}: refusing {key!r}: it leads outside the dataset (symbolic link)")
        return path

    # -- reading -------------------------------------------------------------------------------------------

    def read(self, key: str) -> bytes:
        """The bytes of ``key``, a regular file (a FIFO planted under a dataset name never blocks a reader)."""
        try:
            with open_regular(self.path(key)) as handle:
                return handle.read()
        except DocumentError as exc:
            raise StorageError(f"{self.url}: refusing {key!r}: it {exc}") from None

    def read_versioned(self, key: str) -> Versioned | None:
        try:
            data = self.read(key)
        except FileNotFoundError:
            return None
        return Versioned(data, digest(data))

    def exists(self, key: str) -> bool:
        return os.path.lexists(self.path(key))

    def list(self, prefix: str = "") -> dict[str, int]:
        folder = prefix.rpartition("/")[0]
        base = Path(self.path(folder))
        found: dict[str, int] = {}
        for directory, _, files in os.walk(base):
            relative = Path(directory).relative_to(self.root).as_posix()
            for name in files:
                key = name if relative == "." else f"{relative}/{name}"
                if key.startswith(prefix):
                    found[key] = os.lstat(os.path.join(directory, name)).st_size
        return found

    def entries(self, folder: str = "") -> builtins.list[str]:
        try:
            return sorted(os.listdir(self.path(folder)))
        except (FileNotFoundError, NotADirectoryError):
            return []

    def ranges(self, key: str, size: int) -> RangeReader:
        return _PreadReader(self.path(key))

    # -- writing -------------------------------------------------------------------------------------------

    def put(self, key: str, data: bytes) -> None:
        target = self.path(key)
        os.replace(self._temporary(target, data), target)

    def put_if_absent(self, key: str, data: bytes) -> Token | None:
        target = self.path(key)
        temporary = self._temporary(target, data)
        try:
            os.link(temporary, target)
        except FileExistsError:
            return None
        finally:
            os.unlink(temporary)
        return digest(data)

    def put_if_match(self, key: str, data: bytes, token: Token) -> Token | None:
        target = self.path(key)
        temporary = self._temporary(target, data)
        try:
            with self._locked():
                current = self.read_versioned(key)
                if current is None or current.token != token:
                    return None
                os.replace(temporary, target)
                return digest(data)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)

    def publish(self, local: Path, key: str) -> None:
        target = self.path(key)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.replace(local, target)

    def delete(self, keys: Sequence[str]) -> None:
        """Unlink each key's name: its folder must resolve inside the root, the name itself is not followed
        (a symbolic link planted under a jetstore name is removed, its target never touched)."""
        for key in keys:
            folder, _, name = check_key(key, self.url).rpartition("/")
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(self.path(folder), name))

    def delete_prefix(self, folder: str) -> None:
        """Remove a folder: renamed aside first, so a straggling writer (a cancelled task still running) can
        no longer add files to what is being removed."""
        path = self.path(check_key(folder, self.url))
        if os.path.islink(path):
            os.unlink(path)
            return
        if not os.path.isdir(path):
            return
        aside = f"{path}.removing-{uuid.uuid4().hex}"
        try:
            os.rename(path, aside)
        except FileNotFoundError:  # removed meanwhile
            return
        shutil.rmtree(aside)

    def prune(self, folder: str) -> None:
        with contextlib.suppress(OSError):
            os.rmdir(self.path(check_key(folder, self.url)))

    @contextlib.contextmanager
    def staging(self, folder: str) -> Iterator[Path]:
        base = Path(self.path(folder))
        base.mkdir(parents=True, exist_ok=True)
        directory = Path(tempfile.mkdtemp(dir=base))
        try:
            yield directory
        finally:
            shutil.rmtree(directory, ignore_errors=True)

    # -- helpers -------------------------------------------------------------------------------------------

    def _temporary(self, target: str, data: bytes) -> str:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        temporary = os.path.join(os.path.dirname(target), f".{os.path.basename(target)}.{uuid.uuid4().hex}.tmp")
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        return temporary

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """An exclusive lock of the dataset, between processes and between threads: ``flock`` on its lock
        file (a file opened for writing, which NFS's emulation of ``flock`` by POSIX locks needs)."""
        descriptor = os.open(os.path.join(self.root, paths.LOCK), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            yield
        finally:
            os.close(descriptor)  # releases the lock


class _PreadReader(RangeReader):
    """``os.pread`` on one descriptor, opened at the first read."""

    def __init__(self, path: str):
        self.path = path
        self._fd: int | None = None
        self._lock = threading.Lock()

    def fetch(self, ranges: Sequence[Range]) -> list[bytes]:
        with self._lock:
            if self._fd is None:
                self._fd = os.open(self.path, os.O_RDONLY)
            fd = self._fd
        return [os.pread(fd, b - a, a) if b > a else b"" for a, b in ranges]

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def __del__(self) -> None:
        fd = getattr(self, "_fd", None)
        if fd is not None:
            os.close(fd)
