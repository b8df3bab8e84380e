"""Which byte ranges of an object a cache entry holds: an append-only log of extents, replayed into a sorted
index.

Each record is 32 bytes: the extent's ``[start, end)``, the xxh3-64 digest of its bytes, and a digest of those
three numbers (a record cut short by a crash, or damaged, is seen as such). A writer appends a record only
after the extent's bytes are in the data file, so a reader that finds a record finds the bytes (and checks them
against the digest before use). Writers hold the range they fill (``locks.range_lock``), so extents never
overlap.
"""

from __future__ import annotations

import bisect
import os
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import xxhash

Range = tuple[int, int]
RECORD = struct.Struct("<QQQQ")
HEAD = struct.Struct("<QQQ")


class DamagedLog(Exception):
    """The log holds a record that is not one (cut short or damaged)."""


def record(start: int, end: int, digest: int) -> bytes:
    """The log record of one extent."""
    return RECORD.pack(start, end, digest, _check(start, end, digest))


def _check(start: int, end: int, digest: int) -> int:
    """What a record's last field holds: a digest of the other three."""
    return xxhash.xxh3_64_intdigest(HEAD.pack(start, end, digest))


@dataclass
class Extents:
    """The extents of one entry known to this process: sorted starts, their ends and digests, and how much of
    the log (which file, how many bytes) they come from."""

    starts: list[int] = field(default_factory=list)
    ends: list[int] = field(default_factory=list)
    digests: list[int] = field(default_factory=list)
    log: tuple[int, int] = (-1, -1)  # (device, inode) of the log replayed
    read: int = 0  # bytes of it replayed

    @property
    def held(self) -> int:
        """Bytes held."""
        return sum(self.ends) - sum(self.starts)

    def refresh(self, descriptor: int) -> None:
        """Replay what was appended to the log open as ``descriptor`` since the last call (everything if it is
        another file than before: the entry was dropped and made again)."""
        info = os.fstat(descriptor)
        if (info.st_dev, info.st_ino) != self.log:
            self.starts, self.ends, self.digests = [], [], []
            self.log, self.read = (info.st_dev, info.st_ino), 0
        if info.st_size == self.read:
            return
        data = os.pread(descriptor, info.st_size - self.read, self.read)
        if len(data) % RECORD.size:  # a record cut short by a crash (a 32-byte append never shows half done)
            raise DamagedLog()
        for start, end, digest, check in RECORD.iter_unpack(data):
            if check != _check(start, end, digest) or not start < end:
                raise DamagedLog()
            self._add(start, end, digest)
        self.read += len(data)

    def _add(self, start: int, end: int, digest: int) -> None:
        i = bisect.bisect_left(self.starts, start)
        if i < len(self.starts) and self.starts[i] == start:
            self.ends[i], self.digests[i] = end, digest
        else:
            self.starts.insert(i, start)
            self.ends.insert(i, end)
            self.digests.insert(i, digest)

    def covering(self, start: int, end: int) -> list[tuple[int, int, int]] | None:
        """The extents ``(start, end, digest)`` that together hold ``[start, end)``, or None if a byte is missing."""
        if start >= end:
            return []
        i = bisect.bisect_right(self.starts, start) - 1
        out, position = [], start
        while position < end:
            if i < 0 or i >= len(self.starts) or self.starts[i] > position or self.ends[i] <= position:
                return None
            out.append((self.starts[i], self.ends[i], self.digests[i]))
            position = self.ends[i]
            i += 1
        return out

    def gaps(self, ranges: Sequence[Range]) -> list[Range]:
        """The parts of ``ranges`` held by no extent, merged and sorted."""
        out: list[Range] = []
        for start, end in sorted(ranges):
            for a, b in self._missing(start, end):
                if out and a <= out[-1][1]:
                    out[-1] = (out[-1][0], max(out[-1][1], b))
                else:
                    out.append((a, b))
        return out

    def _missing(self, start: int, end: int) -> Iterator[Range]:
        i = max(0, bisect.bisect_right(self.starts, start) - 1)
        position = start
        while position < end and i < len(self.starts):
            if self.ends[i] <= position:
                i += 1
                continue
            if self.starts[i] >= end:
                break
            if self.starts[i] > position:
                yield position, self.starts[i]
            position = max(position, self.ends[i])
            i += 1
        if position < end:
            yield position, end
