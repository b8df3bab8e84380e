"""Byte ranges of one stored object through the node's cache: what the cache holds is read from local disk
(checked first), what it lacks is fetched from storage once per node and kept.

A miss fetches exactly the bytes the cache lacks, under a lock of its byte range (``locks.range_lock``): a process
or thread that wants the same bytes at the same time waits and then reads them from the cache, so the node
downloads each byte once. An object cached to ``COMPLETE`` of its bytes is fetched whole in the background, in
large requests (then checked against the manifest's checksum): a first epoch fetches no more than it reads until
then, later epochs that read a fraction of the data fill the cache to completion, and after a full epoch the
next reads nothing from storage.
"""

from __future__ import annotations

import bisect
import contextlib
import errno
import os
import threading
from collections.abc import Iterator, Sequence

import numpy as np

from jetstore.cache import locks, verify
from jetstore.cache.extents import DamagedLog, Extents, Range, record
from jetstore.cache.key import ObjectKey
from jetstore.cache.store import DISK_FULL, CacheStore
from jetstore.io.backend import RangeReader

COMPLETE = 0.5  # an object cached to this fraction is fetched whole in the background
COMPLETE_STEP = 16 << 20  # bytes fetched at once when completing an object
EXTENT = 256 << 10  # the most bytes one extent record covers (a read checks whole extents)
SLACK = 16384  # what an extent may take on disk beyond its bytes: partial blocks at its ends, its record, files


class Damaged(Exception):
    """A cached extent does not match its digest."""


class StorageFailed(Exception):
    """Reading the storage failed (``__cause__``): not the cache's business."""


class CachedRanges(RangeReader):
    """The ranges of the object ``key`` (``remote`` reads it from storage) through ``store``."""

    def __init__(self, remote: RangeReader, store: CacheStore, key: ObjectKey):
        self.remote, self.store, self.key = remote, store, key
        self.name = key.name
        self.extents = Extents()
        self.lock = threading.Lock()

    def fetch(self, ranges: Sequence[Range]) -> list[bytes]:
        ranges = list(ranges)
        try:
            for _ in range(2):  # a damaged entry is dropped, and read again once
                with self._guarded():
                    cached = self._cached(ranges)
                    if cached is not None:
                        return cached
                    if not self.store.writable:
                        break
                    if self.store.ensure(self.key) is None:  # no room for another entry
                        out = self._remote(ranges)
                        self.store.counters.add(refused_bytes=sum(len(p) for p in out))
                        return out
                    pieces = self._fill(ranges)
                    return [pieces.slice(a, b) for a, b in ranges]
            return self._remote(ranges)
        except StorageFailed as exc:
            raise (exc.__cause__ or exc) from None

    def complete(self) -> None:
        """Fetch whatever the cache lacks of the object, ``COMPLETE_STEP`` bytes at a time (on the store's
        background thread)."""
        with self._guarded():
            self._refresh()
            with self.lock:
                gaps = self.extents.gaps([(0, self.key.size)])
            while gaps and self.store.writable:
                sizes = np.cumsum([b - a for a, b in gaps])
                step = max(1, int(np.searchsorted(sizes, COMPLETE_STEP)))
                self._fill(gaps[:step])
                gaps = gaps[step:]

    @contextlib.contextmanager
    def _guarded(self) -> Iterator[None]:
        """Failures of the cache (not of the storage): a damaged entry is dropped, a full or failing disk
        stops caching, an entry evicted meanwhile is made again at the next try."""
        try:
            yield
        except Damaged as exc:
            self.store.drop(self.name, f"{self.key.url}: {exc}")
        except FileNotFoundError:
            pass
        except OSError as exc:
            if exc.errno not in DISK_FULL and exc.errno not in (errno.EIO, errno.EACCES, errno.EROFS):
                raise
            self.store.disable(exc)

    def close(self) -> None:
        self.remote.close()

    # -- hits ------------------------------------------------------------------------------------------------

    def _cached(self, ranges: list[Range]) -> list[bytes] | None:
        """Every range from the cache, or None if any byte is not there."""
        try:
            self._refresh()
        except FileNotFoundError:
            return None
        with self.lock:
            covers = [self.extents.covering(a, b) for a, b in ranges]
        if any(cover is None for cover in covers):
            return None
        with self._data(os.O_RDONLY) as descriptor:
            pieces = Pieces(self._read(descriptor, [e for cover in covers if cover is not None for e in cover]))
        out = [pieces.slice(a, b) for a, b in ranges]
        self.store.touch(self.name)
        self.store.counters.add(hit_bytes=sum(len(p) for p in out))
        return out

    def _read(self, descriptor: int, extents: list[tuple[int, int, int]]) -> dict[int, bytes]:
        """The bytes of these extents, each checked against its digest."""
        out = {}
        for start, end, digest in extents:
            if start in out:
                continue
            data = os.pread(descriptor, end - start, start)
            if len(data) != end - start or verify.digest(data) != digest:
                raise Damaged(f"bytes {start}-{end} do not match the digest recorded when they were fetched")
            out[start] = data
        return out

    # -- misses ----------------------------------------------------------------------------------------------

    def _fill(self, ranges: list[Range]) -> Pieces:
        """Fetch what the cache lacks of ``ranges`` and keep it (in the entry, made); the bytes of ``ranges``."""
        span = (min(a for a, _ in ranges), max(b for _, b in ranges))
        with locks.range_lock(self.store.path(self.name, "data"), *span):
            self._refresh()  # another process may have filled some of it while we waited
            with self.lock:
                gaps = self.extents.gaps(ranges)
            fetched = dict(zip((a for a, _ in gaps), self._remote(gaps), strict=True)) if gaps else {}
            kept = self._keep(fetched)
        pieces = Pieces(fetched)
        rest = [part for a, b in ranges for part in pieces.missing(a, b)]
        if rest:
            with self.lock:
                covers = [self.extents.covering(a, b) for a, b in rest]
            if any(cover is None for cover in covers):  # dropped by another process meanwhile
                raise FileNotFoundError(self.store.path(self.name))
            with self._data(os.O_RDONLY) as descriptor:
                pieces.add(self._read(descriptor, [e for cover in covers if cover is not None for e in cover]))
        if kept:
            self._after_keeping()
        self.store.touch(self.name)
        return pieces

    def _keep(self, fetched: dict[int, bytes]) -> bool:
        """Write fetched extents to the entry (those the cache admits) and record them; whether any was."""
        kept = False
        with self._data(os.O_WRONLY) as descriptor:
            for start, data in fetched.items():
                view = memoryview(data)
                records = b"".join(record(start + i, start + i + len(view[i:i + EXTENT]),
                                          verify.digest(view[i:i + EXTENT])) for i in range(0, len(data), EXTENT))
                with self.store.admit(self.name, len(data) + SLACK) as admitted:
                    if admitted:
                        os.pwrite(descriptor, data, start)
                        self._append(records)
                self.store.counters.add(**{"written_bytes" if admitted else "refused_bytes": len(data)})
                kept |= admitted
        self._refresh()
        return kept

    def _after_keeping(self) -> None:
        """A mostly cached object is completed in the background; a complete one is checked against the
        manifest's checksum once (a mismatch drops it)."""
        with self.lock:
            held = self.extents.held
        if held < self.key.size:
            if held >= COMPLETE * self.key.size:
                self.store.later(self.name, self.complete)
            return
        marker = self.store.path(self.name, "verified")
        if not self.key.file_checksum or os.path.exists(marker):
            return
        if not verify.file_matches(self.store.path(self.name, "data"), self.key.size, self.key.file_checksum):
            raise Damaged("the complete object does not match the manifest's checksum")
        open(marker, "wb").close()

    # -- files -----------------------------------------------------------------------------------------------

    def _remote(self, ranges: list[Range]) -> list[bytes]:
        try:
            out = self.remote.fetch(ranges)
        except Exception as exc:
            raise StorageFailed() from exc
        self.store.counters.add(fetched_bytes=sum(len(p) for p in out))
        return out

    def _refresh(self) -> None:
        """Bring the known extents up to the log (a damaged log is a damaged entry)."""
        try:
            descriptor = os.open(self.store.path(self.name, "extents"), os.O_RDONLY)
        except FileNotFoundError:
            with self.lock:
                self.extents = Extents()
            raise
        try:
            with self.lock:
                self.extents.refresh(descriptor)
        except DamagedLog:
            raise Damaged("its list of cached ranges is damaged") from None
        finally:
            os.close(descriptor)

    def _append(self, line: bytes) -> None:
        descriptor = os.open(self.store.path(self.name, "extents"), os.O_WRONLY | os.O_APPEND)
        try:
            os.write(descriptor, line)
        finally:
            os.close(descriptor)

    @contextlib.contextmanager
    def _data(self, flags: int) -> Iterator[int]:
        descriptor = os.open(self.store.path(self.name, "data"), flags)
        try:
            yield descriptor
        finally:
            os.close(descriptor)


class Pieces:
    """Bytes at known offsets of the object, sliced into requested ranges (which may span several)."""

    def __init__(self, pieces: dict[int, bytes]):
        self.starts: list[int] = []
        self.data: list[bytes] = []
        self.add(pieces)

    def add(self, pieces: dict[int, bytes]) -> None:
        for start, data in pieces.items():
            i = bisect.bisect_left(self.starts, start)
            self.starts.insert(i, start)
            self.data.insert(i, data)

    def missing(self, start: int, end: int) -> Iterator[Range]:
        """The parts of ``[start, end)`` no piece holds."""
        position = start
        for offset, data in zip(self.starts, self.data, strict=True):
            if offset >= end:
                break
            if offset > position:
                yield position, offset
            position = max(position, offset + len(data))
        if position < end:
            yield position, end

    def slice(self, start: int, end: int) -> bytes:
        i = bisect.bisect_right(self.starts, start) - 1
        parts, position = [], start
        while position < end:
            offset, data = self.starts[i], self.data[i]
            parts.append(data[position - offset:end - offset])
            position = offset + len(data)
            i += 1
        return parts[0] if len(parts) == 1 else b"".join(parts)
