"""Writing a zip of stored (uncompressed) entries in one pass, headers laid out by a numba kernel.

A shard holds ~30,000 entries per 100k jets; :mod:`zipfile` spends ~30 µs of Python on each (a ``ZipInfo``,
header packing, seeks back to patch sizes and CRC). Here the entries' bytes already lie in buffers with their
CRCs (:mod:`jetstore.formats.zarr.encode` computes them while encoding), so a kernel lays out every
local header, name and payload, then the central directory and the end records, into one buffer written
with one call. The archive is what ``zipfile`` writes for ``ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))``
entries stored uncompressed (version 2.0, no extra fields; a zip64 offset for an entry beyond 2 GiB, as
zipfile), except that the zip64 end records are written only where the end record cannot hold the count,
size or offset (then it holds the 0xFFFF... markers that send every reader to them), so any zip reader
(zipfile, ``zarr.storage.ZipStore``, jetstore's own directory parser) reads it. The end record may carry a
comment (a Zarr shard's: where its chunk index lies).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numba
import numpy as np

from jetstore.formats.zarr.directory import END_SIGNATURE, MAX_COMMENT

LOCAL_HEADER, CENTRAL_HEADER, END_RECORD, ZIP64_END, ZIP64_LOCATOR, ZIP64_EXTRA = 30, 46, 22, 56, 20, 12
ZIP64_LIMIT = (1 << 31) - 1  # as zipfile: an entry's header beyond this has its offset in a zip64 field
COUNT_MARK, SIZE_MARK = 0xFFFF, 0xFFFFFFFF  # an end record field holding these: the value is in the zip64 records
DOS_DATE = (1 << 5) | 1  # 1980-01-01, 00:00:00: fixed, so identical shards have identical bytes
VERSION, ZIP64_VERSION, UNIX = 20, 45, 3


@dataclass(frozen=True)
class Entries:
    """Zip entries whose bytes lie in one buffer: entry i is ``names[i]``, ``source[offsets[i]:offsets[i] +
    sizes[i]]``, with CRC-32 ``crcs[i]``."""

    names: list[str]
    source: np.ndarray
    offsets: np.ndarray
    sizes: np.ndarray
    crcs: np.ndarray


def write_zip(path: Path, parts: list[Entries], comment: bytes = b"") -> None:
    """Write the entries of ``parts``, in order, as a zip archive at ``path``, with the archive's ``comment``."""
    names = [name.encode() for part in parts for name in part.names]
    name_bytes = np.frombuffer(b"".join(names), np.uint8)
    name_lengths = np.fromiter(map(len, names), np.int64, len(names))
    name_starts = np.concatenate(([0], np.cumsum(name_lengths)[:-1])).astype(np.int64)
    sizes = np.concatenate([part.sizes for part in parts]).astype(np.int64)
    crcs = np.concatenate([part.crcs for part in parts]).astype(np.int64)
    if (sizes > ZIP64_LIMIT).any():
        raise ValueError("a zip entry of more than 2 GiB")
    if len(comment) > MAX_COMMENT or END_SIGNATURE in comment:
        raise ValueError("a zip comment must be at most 65535 bytes, without an end record signature")
    entries = sizes + LOCAL_HEADER + name_lengths
    data_end = int(entries.sum())
    far = int((np.cumsum(entries) - entries > ZIP64_LIMIT).sum())  # entries whose header lies beyond 2 GiB
    directory = int((CENTRAL_HEADER + name_lengths).sum()) + far * ZIP64_EXTRA
    zip64 = len(names) >= COUNT_MARK or data_end >= SIZE_MARK or directory >= SIZE_MARK
    out = np.empty(data_end + directory + END_RECORD + (ZIP64_END + ZIP64_LOCATOR if zip64 else 0) + len(comment),
                   np.uint8)
    headers = np.empty(len(names), np.int64)
    at, first = 0, 0
    for part in parts:
        count = len(part.names)
        at = _write_entries(out, at, part.source, part.offsets.astype(np.int64), sizes[first:first + count],
                            crcs[first:first + count], name_bytes, name_starts[first:first + count],
                            name_lengths[first:first + count], headers[first:first + count])
        first += count
    end = _write_directory(out, at, sizes, crcs, name_bytes, name_starts, name_lengths, headers, zip64, len(comment))
    out[end:end + len(comment)] = np.frombuffer(comment, np.uint8)
    end += len(comment)
    if end != len(out):
        raise AssertionError(f"zip layout: wrote {end} of {len(out)} bytes")
    with open(path, "wb") as file:
        file.write(out.data)


@numba.njit(cache=True, nogil=True, inline="always")
def _put(out, at, value, width):  # pragma: no cover
    for k in range(width):
        out[at + k] = (value >> (8 * k)) & 0xFF


@numba.njit(cache=True, nogil=True)
def _write_entries(out, at, source, offsets, sizes, crcs, names, name_starts, name_lengths,
                   headers):  # pragma: no cover
    """Local header, name and bytes of every entry from ``at``; records each header's offset. Returns the end."""
    for i in range(len(sizes)):
        headers[i] = at
        _put(out, at, 0x04034B50, 4)
        _put(out, at + 4, VERSION, 2)
        _put(out, at + 6, 0, 4)  # flags, method (stored)
        _put(out, at + 10, 0, 2)  # time
        _put(out, at + 12, DOS_DATE, 2)
        _put(out, at + 14, crcs[i], 4)
        _put(out, at + 18, sizes[i], 4)
        _put(out, at + 22, sizes[i], 4)
        _put(out, at + 26, name_lengths[i], 2)
        _put(out, at + 28, 0, 2)  # extra
        at += LOCAL_HEADER
        out[at:at + name_lengths[i]] = names[name_starts[i]:name_starts[i] + name_lengths[i]]
        at += name_lengths[i]
        out[at:at + sizes[i]] = source[offsets[i]:offsets[i] + sizes[i]]
        at += sizes[i]
    return at


@numba.njit(cache=True, nogil=True)
def _write_directory(out, at, sizes, crcs, names, name_starts, name_lengths, headers, zip64,
                     comment_length):  # pragma: no cover
    """The central directory from ``at``, then the end records (the comment's bytes follow). Returns the end."""
    start = at
    for i in range(len(sizes)):
        far = headers[i] > ZIP64_LIMIT
        version = ZIP64_VERSION if far else VERSION
        _put(out, at, 0x02014B50, 4)
        out[at + 4], out[at + 5] = version, UNIX
        _put(out, at + 6, version, 2)
        _put(out, at + 8, 0, 4)  # flags, method
        _put(out, at + 12, 0, 2)
        _put(out, at + 14, DOS_DATE, 2)
        _put(out, at + 16, crcs[i], 4)
        _put(out, at + 20, sizes[i], 4)
        _put(out, at + 24, sizes[i], 4)
        _put(out, at + 28, name_lengths[i], 2)
        _put(out, at + 30, ZIP64_EXTRA if far else 0, 2)
        _put(out, at + 32, 0, 10)  # comment length, disk, internal and external attributes
        _put(out, at + 42, 0xFFFFFFFF if far else headers[i], 4)
        at += CENTRAL_HEADER
        out[at:at + name_lengths[i]] = names[name_starts[i]:name_starts[i] + name_lengths[i]]
        at += name_lengths[i]
        if far:
            _put(out, at, 1, 2)
            _put(out, at + 2, 8, 2)
            _put(out, at + 4, headers[i], 8)
            at += ZIP64_EXTRA
    size, count = at - start, len(sizes)
    if zip64:
        _put(out, at, 0x06064B50, 4)
        _put(out, at + 4, 44, 8)
        _put(out, at + 12, ZIP64_VERSION, 2)
        _put(out, at + 14, ZIP64_VERSION, 2)
        _put(out, at + 16, 0, 8)  # disks
        _put(out, at + 24, count, 8)
        _put(out, at + 32, count, 8)
        _put(out, at + 40, size, 8)
        _put(out, at + 48, start, 8)
        _put(out, at + 56, 0x07064B50, 4)
        _put(out, at + 60, 0, 4)
        _put(out, at + 64, at, 8)
        _put(out, at + 72, 1, 4)
        at += ZIP64_END + ZIP64_LOCATOR
    _put(out, at, 0x06054B50, 4)
    _put(out, at + 4, 0, 4)
    _put(out, at + 8, COUNT_MARK if zip64 else count, 2)
    _put(out, at + 10, COUNT_MARK if zip64 else count, 2)
    _put(out, at + 12, SIZE_MARK if zip64 else size, 4)
    _put(out, at + 16, SIZE_MARK if zip64 else start, 4)
    _put(out, at + 20, comment_length, 2)
    return at + END_RECORD
