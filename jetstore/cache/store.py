"""The cache directory of a node: its entries, what they take on disk, and which go when space is needed.

    <cache_dir>/jetstore-cache-v1/
        entries/<name>/meta.json    the object (``key.ObjectKey``); its modification time is the entry's last use
        entries/<name>/data         the object's bytes at their own offsets (a sparse file: only what is cached)
        entries/<name>/extents      which ranges ``data`` holds (``extents.py``)
        entries/<name>/verified     present once the whole object matched the manifest's checksum
        usage                       bytes the entries take, as counted by the processes (under ``lock``)
        lock                        held to change ``usage``
        writing                     held shared by every write in flight, exclusively to count the disk
        tmp/, trash/

An entry is made in ``tmp/`` and renamed into place (two processes making one at once: one wins, the other uses
it), and dropped by a rename into ``trash/`` before it is deleted, so no process ever sees half an entry.
Processes that still have files of a dropped entry open keep reading bytes they check, and notice the drop at
their next write.

**Eviction.** Before bytes are written (an entry's files too) they are admitted against ``limit``: when the
entries would take more, the least recently used entries that this session (the sampler that opened the cache,
with its ranks and workers) has not used are deleted. When every entry has been used by this session, the
bytes are not cached: a cache smaller than what an epoch reads then keeps what it holds and serves it every
epoch, where plain LRU would evict each entry just before the next epoch needs it.

**Counting.** ``usage`` is never below what the entries take on disk: bytes are counted when admitted (with
room for partial blocks and records), before they are written, and written while ``writing`` is held shared.
When the count says the cache is full, the disk is counted again (over-counted bytes, failed writes and dead
processes' admissions are forgotten), holding ``writing`` exclusively: the writes in flight are waited for,
so the count never misses bytes admitted but not yet on disk.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import queue
import shutil
import struct
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import ClassVar

from jetstore.cache import locks
from jetstore.cache.key import ObjectKey

LOG = logging.getLogger(__name__)
ROOT = "jetstore-cache-v1"
TOUCH_SECONDS = 30.0  # an entry's last use is recorded at most this often per process
RECHECK_SECONDS = 10.0  # a full cache of this session's entries is counted again at most this often
LEFTOVER_SECONDS = 3600.0  # a folder in tmp/ or trash/ this old belongs to no running process
CLOCK_SLACK = 2.0  # file times may be coarser than the clock: a use this close to the session start is its own
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


@dataclass
class Counters:
    """What this process's reads did: bytes served from the cache, fetched from storage, written to the cache,
    fetched but not kept (the cache full), and entries dropped as damaged."""

    hit_bytes: int = 0
    fetched_bytes: int = 0
    written_bytes: int = 0
    refused_bytes: int = 0
    dropped: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **amounts: int) -> None:
        with self.lock:
            for name, amount in amounts.items():
                setattr(self, name, getattr(self, name) + amount)


@dataclass(frozen=True)
class EntryInfo:
    """One entry as ``jetstore cache ls`` shows it."""

    name: str
    key: ObjectKey | None  # None: its meta.json is unreadable
    held: int  # bytes on disk
    verified: bool
    last_used: float


class CacheStore:
    """A node's cache directory as one process uses it (thread-safe; :meth:`shared` gives one per process)."""

    _shared: ClassVar[dict[tuple, CacheStore]] = {}
    _shared_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, directory: str, limit: int | None = None, since: float = 0.0):
        self.directory, self.limit, self.since = directory, limit, since
        self.root = os.path.join(directory, ROOT)
        self.counters = Counters()
        self.writable = True
        self._touched: dict[str, float] = {}
        self._full_at = -RECHECK_SECONDS
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._queued: set[str] = set()
        self._idle = threading.Condition(self._lock)
        self._worker: threading.Thread | None = None

    @classmethod
    def shared(cls, directory: str, limit: int | None, since: float) -> CacheStore:
        """This process's store of ``directory`` (DataLoader workers make their own), its folders made."""
        key = (os.getpid(), directory, limit, since)
        with cls._shared_lock:
            if key not in cls._shared:
                store = cls(directory, limit, since)
                for folder in ("entries", "tmp", "trash"):
                    os.makedirs(os.path.join(store.root, folder), exist_ok=True)
                store._sweep()
                cls._shared[key] = store
            return cls._shared[key]

    def _sweep(self) -> None:
        """Delete what processes that died left in ``tmp/`` and ``trash/`` (untouched for ``LEFTOVER_SECONDS``)."""
        for folder in ("tmp", "trash"):
            with os.scandir(os.path.join(self.root, folder)) as found:
                for item in found:
                    with contextlib.suppress(FileNotFoundError):
                        if time.time() - item.stat(follow_symlinks=False).st_mtime > LEFTOVER_SECONDS:
                            shutil.rmtree(item.path, ignore_errors=True)

    @property
    def exists(self) -> bool:
        return os.path.isdir(os.path.join(self.root, "entries"))

    # -- entries ---------------------------------------------------------------------------------------------

    def path(self, name: str, part: str = "") -> str:
        return os.path.join(self.root, "entries", name, part) if part else os.path.join(self.root, "entries", name)

    def ensure(self, key: ObjectKey) -> str | None:
        """The entry of ``key``, made (empty, its files admitted) if there is none; its name, or None when the
        cache has no room for it."""
        name = key.name
        if os.path.exists(self.path(name, "meta.json")):
            return name
        staging = os.path.join(self.root, "tmp", uuid.uuid4().hex)
        os.makedirs(staging)
        try:
            with open(os.path.join(staging, "meta.json"), "w") as handle:
                json.dump(key.to_dict(), handle)
            for part in ("data", "extents"):
                open(os.path.join(staging, part), "wb").close()
            with self.admit(name, _held(staging)) as admitted:
                if not admitted:
                    return None
                try:
                    os.rename(staging, self.path(name))
                except OSError:
                    if not os.path.exists(self.path(name, "meta.json")):  # else another process made it first
                        raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return name

    def touch(self, name: str) -> None:
        """Record a use of the entry (at most every ``TOUCH_SECONDS`` per process)."""
        now = time.time()
        if now - self._touched.get(name, -TOUCH_SECONDS) < TOUCH_SECONDS:
            return
        self._touched[name] = now
        with contextlib.suppress(FileNotFoundError):
            os.utime(self.path(name, "meta.json"))

    def drop(self, name: str, reason: str) -> None:
        """Delete a damaged entry, saying why (a warning)."""
        held = self._remove(name)
        if held is not None:
            self.release(held)
            self.counters.add(dropped=1)
            LOG.warning("cache %s: %s; dropped, read again from storage", self.directory, reason)

    def _remove(self, name: str) -> int | None:
        """Delete an entry (renamed away first: nobody sees it half deleted): the bytes it took, None if it was
        gone already. The usage count is the caller's."""
        trash = os.path.join(self.root, "trash", uuid.uuid4().hex)
        held = _held(self.path(name))
        try:
            os.rename(self.path(name), trash)
        except FileNotFoundError:
            return None
        shutil.rmtree(trash, ignore_errors=True)
        self._touched.pop(name, None)
        return held

    def later(self, name: str, task: Callable[[], None]) -> None:
        """Run ``task`` for entry ``name`` on this process's background thread (once while one is queued)."""
        with self._lock:
            if name in self._queued:
                return
            self._queued.add(name)
            if self._worker is None:
                self._worker = threading.Thread(target=self._work, name="jetstore-cache", daemon=True)
                self._worker.start()
        self._queue.put(lambda: self._run(name, task))

    def _run(self, name: str, task: Callable[[], None]) -> None:
        try:
            task()
        except Exception as exc:  # the storage failed: the reads that need these bytes will fetch them
            LOG.debug("cache %s: completing an entry failed (%s: %s)", self.directory, type(exc).__name__, exc)
        finally:
            with self._lock:
                self._queued.discard(name)
                self._idle.notify_all()

    def settle(self, timeout: float | None = None) -> bool:
        """Wait until the background work queued so far is done; whether it is."""
        with self._lock:
            return self._idle.wait_for(lambda: not self._queued, timeout)

    def _work(self) -> None:
        while True:
            self._queue.get()()

    # -- space -----------------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def admit(self, name: str, size: int) -> Iterator[bool]:
        """Whether ``size`` more bytes of entry ``name`` may be written; they are counted if so, and written in
        the ``with`` block (in flight until it ends: a count of the disk waits for them). Bytes a failed write
        leaves counted stay so until the disk is counted again."""
        if self.limit is None:
            yield True
            return
        with contextlib.ExitStack() as in_flight:
            with self._locked_usage() as usage:
                admitted = self._fits(usage, name, size)
                if admitted:
                    usage[0] += size
                    in_flight.enter_context(locks.file_lock(os.path.join(self.root, "writing"), shared=True))
            yield admitted

    def _fits(self, usage: list[int], name: str, size: int) -> bool:
        """Whether ``size`` more bytes fit under the limit, evicting if they would not. Eviction frees a
        sixteenth of the limit more than needed, so it runs seldom; a cache full of this session's entries is
        not counted again for ``RECHECK_SECONDS``."""
        limit = self.limit
        assert limit is not None  # admitting runs only under a limit
        if usage[0] + size <= limit:
            return True
        now = time.monotonic()
        if now - self._full_at < RECHECK_SECONDS:
            return False
        usage[0] = self._evict(size + limit // 16, keep=name)
        if usage[0] + size > limit:
            self._full_at = now
            return False
        return True

    def release(self, size: int) -> None:
        """Bytes no longer taken: of a deleted entry."""
        if self.limit is not None and size:
            self._count(-size)

    def disable(self, exc: OSError) -> None:
        """Stop writing (the disk is full or failing): one warning per process, then reads stream."""
        with self._lock:
            if not self.writable:
                return
            self.writable = False
        cause = "the disk is full" if exc.errno in DISK_FULL else f"{type(exc).__name__}: {exc.strerror or exc}"
        LOG.warning("cache %s: %s; reading from storage without caching from now on", self.directory, cause)

    def usage(self) -> int:
        """Bytes the entries take on disk now (counted afresh)."""
        return sum(info.held for info in self.entries())

    def _evict(self, size: int, keep: str) -> int:
        """Delete least recently used entries this session has not used until ``size`` more bytes fit (or none is
        left); the bytes the entries take afterwards."""
        limit = self.limit
        assert limit is not None  # evicting runs only under a limit
        infos = self._settled_entries()
        used = sum(info.held for info in infos)
        for info in sorted(infos, key=lambda i: i.last_used):
            if used + size <= limit or info.last_used >= self.since - CLOCK_SLACK:
                break
            if info.name != keep and not locks.in_use(self.path(info.name, "data")):
                used -= self._remove(info.name) or 0
        return used

    def _count(self, size: int) -> None:
        with self._locked_usage() as usage:
            usage[0] = max(0, usage[0] + size)

    @contextlib.contextmanager
    def _locked_usage(self) -> Iterator[list[int]]:
        """The usage counter, held exclusively; what is left in the list is written back."""
        path = os.path.join(self.root, "usage")
        with self._lock, locks.file_lock(os.path.join(self.root, "lock")):
            try:
                with open(path, "rb") as handle:
                    (value,) = struct.unpack("<q", handle.read(8))
            except (FileNotFoundError, struct.error):
                value = sum(info.held for info in self._settled_entries())
            usage = [value]
            yield usage
            staging = f"{path}.{os.getpid()}.tmp"
            with open(staging, "wb") as handle:
                handle.write(struct.pack("<q", usage[0]))
            os.replace(staging, path)

    def _settled_entries(self) -> list[EntryInfo]:
        """Every entry as the disk shows it with no write in flight (those under way are waited for; the caller
        holds the usage lock, so no other starts): every byte counted is on disk then."""
        with locks.file_lock(os.path.join(self.root, "writing")):
            return self.entries()

    # -- listing ---------------------------------------------------------------------------------------------

    def entries(self) -> list[EntryInfo]:
        """Every entry, with its bytes on disk and last use."""
        out: list[EntryInfo] = []
        if not self.exists:
            return out
        with os.scandir(os.path.join(self.root, "entries")) as found:
            for item in found:
                try:
                    meta = os.stat(os.path.join(item.path, "meta.json"))
                    held = _held(item.path)
                except FileNotFoundError:
                    continue
                out.append(EntryInfo(item.name, _read_key(item.path), held,
                                     os.path.exists(os.path.join(item.path, "verified")), meta.st_mtime))
        return out

    def clear(self, dataset: str | None = None) -> list[EntryInfo]:
        """Delete every entry (of the dataset URL ``dataset`` only, when given); the entries deleted."""
        gone = [info for info in self.entries() if dataset is None or (info.key and info.key.dataset == dataset)]
        for info in gone:
            self.release(self._remove(info.name) or 0)
        return gone


def _held(folder: str) -> int:
    """Bytes an entry takes on disk (allocated blocks: its data file is sparse)."""
    total = 0
    for part in ("data", "extents", "meta.json"):
        with contextlib.suppress(FileNotFoundError):
            total += os.stat(os.path.join(folder, part)).st_blocks * 512
    return total


def _read_key(folder: str) -> ObjectKey | None:
    try:
        with open(os.path.join(folder, "meta.json")) as handle:
            return ObjectKey.from_dict(json.load(handle))
    except (OSError, ValueError, KeyError, TypeError):
        return None
