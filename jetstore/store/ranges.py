"""Exact byte-range reads of one stored object, local or remote.

A :class:`ByteSource` fetches lists of ``[start, end)`` ranges through its storage backend's range reader
(``os.pread`` on local files, one concurrent ``cat_ranges`` call, a GET with a ``Range`` header per range,
on object stores). :func:`coalesce` merges
nearby ranges so a unit of jets costs one request where the layout allows, and :class:`SparseFile` lets
libraries that want a file object (``zipfile``, pyarrow) parse fetched pieces without further reads.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from jetstore.store.backend import Backend, RangeReader

Range = tuple[int, int]


@dataclass(frozen=True)
class Coalesced:
    """Merged ranges, and for every requested range the merged range holding it and its offset there."""

    ranges: tuple[Range, ...]
    where: tuple[tuple[int, int], ...]


def coalesce(ranges: Sequence[Range], max_gap: int) -> Coalesced:
    """Merge ranges whose gap is at most ``max_gap`` bytes (overlapping ones always)."""
    order = sorted(range(len(ranges)), key=lambda i: ranges[i][0])
    merged: list[list[int]] = []
    where: list[tuple[int, int]] = [(0, 0)] * len(ranges)
    for i in order:
        start, end = ranges[i]
        if merged and start - merged[-1][1] <= max_gap:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
        where[i] = (len(merged) - 1, start - merged[-1][0])
    return Coalesced(tuple((a, b) for a, b in merged), tuple(where))


class ByteSource:
    """Range reads of the object ``key`` of a backend (through ``reader`` when given: a cache of it); counts bytes
    and requests. Thread-safe."""

    def __init__(self, backend: Backend, key: str, size: int, reader: RangeReader | None = None):
        self.path, self.size = backend.path(key), size
        self._reader = reader or backend.ranges(key, size)
        self._lock = threading.Lock()
        self.bytes_fetched = 0
        self.requests = 0

    def fetch(self, ranges: Sequence[Range]) -> list[bytes]:
        """The bytes of every range (clipped to the file size), in order."""
        ranges = [(max(0, a), min(b, self.size)) for a, b in ranges]
        out = self._reader.fetch(ranges)
        with self._lock:
            self.bytes_fetched += sum(len(piece) for piece in out)
            self.requests += len(ranges)
        return out

    def tail(self, length: int) -> tuple[int, bytes]:
        """The last ``length`` bytes (or the whole file): (their offset, the bytes)."""
        start = max(0, self.size - length)
        return start, self.fetch([(start, self.size)])[0]

    def close(self) -> None:
        self._reader.close()


class SparseFile(io.RawIOBase):
    """A read-only file of a known size made of fetched pieces; a read outside them calls ``fetch``."""

    def __init__(self, size: int, pieces: dict[int, bytes], fetch: Callable[[int, int], bytes]):
        super().__init__()
        self.size, self.fetch_missing = size, fetch
        self.pieces = sorted(pieces.items())
        self.position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self.position, 2: self.size}[whence]
        self.position = base + offset
        return self.position

    def tell(self) -> int:
        return self.position

    def readinto(self, buffer) -> int:
        start = self.position
        end = min(self.size, start + len(buffer))
        if end <= start:
            return 0
        data = self._slice(start, end)
        buffer[:len(data)] = data
        self.position += len(data)
        return len(data)

    def range(self, start: int, end: int) -> bytes:
        """Bytes ``[start, end)``, from the fetched pieces or fetched now."""
        return self._slice(start, min(end, self.size))

    def _slice(self, start: int, end: int) -> bytes:
        for offset, data in self.pieces:
            if offset <= start and end <= offset + len(data):
                return data[start - offset:end - offset]
        data = self.fetch_missing(start, end)
        self.pieces.append((start, data))
        return data
