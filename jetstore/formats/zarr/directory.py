"""The zip central directory of a Zarr shard, parsed by a numba kernel instead of :mod:`zipfile`.

A 100k-jet shard of 256-jet units holds ~30,000 chunk entries; ``zipfile`` builds a Python object per entry
(0.45 s a shard, ~45 s for the 10M-jet dataset's first batch). The kernel walks the directory's bytes once and
returns, per entry, its local header offset, sizes, CRC, compression method, name length and, for chunk
entries (``<array>/c/<n>``), the chunk number and a hash of the array key; Python then decodes only one
name per array and the few metadata documents. Nothing in the directory is trusted: every field is bounds-
checked here, and the reader checks every size against the shard and the manifest.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numba
import numpy as np

CENTRAL_HEADER_SIZE = 46
END_SIZE = 22
END_SIGNATURE = b"PK\x05\x06"
ZIP64_LOCATOR_SIGNATURE = b"PK\x06\x07"
ZIP64_END_SIGNATURE = b"PK\x06\x06"
MAX_COMMENT = 65535
MAX_NUMBER_DIGITS = 11
# the kernel's problems
OK, SHORT, BAD_SIGNATURE, BAD_ZIP64 = 0, 1, 2, 3
PROBLEMS = {SHORT: "its zip directory is cut short", BAD_SIGNATURE: "its zip directory has a bad entry header",
            BAD_ZIP64: "its zip directory has a malformed zip64 field"}


class DirectoryError(ValueError):
    """The zip directory cannot be parsed (the message says why)."""


@dataclass(frozen=True)
class Entries:
    """The directory's entries, as arrays; ``keys[key_ids[i]]`` is chunk entry i's array (-1: not a chunk)."""

    offsets: np.ndarray       # local header offset
    sizes: np.ndarray         # stored (compressed) size
    file_sizes: np.ndarray    # uncompressed size
    methods: np.ndarray       # compression method (0: stored)
    crcs: np.ndarray
    name_lengths: np.ndarray
    numbers: np.ndarray       # chunk number, -1 for other entries
    key_ids: np.ndarray
    keys: list[str]
    others: dict[int, str]    # entry index → name, for the entries that are not chunks (metadata documents)

    def __len__(self) -> int:
        return len(self.offsets)


def locate(tail: bytes, tail_start: int, size: int) -> tuple[int, int, int]:
    """(entries, directory offset, directory size) from the end records in the file's ``tail``."""
    at = _end_record(tail)
    count, directory_size, directory_offset = struct.unpack("<HII", tail[at + 10:at + 20])
    end = tail_start + at
    if 0xFFFF in (count,) or 0xFFFFFFFF in (directory_size, directory_offset):
        locator = at - 20
        if locator < 0 or tail[locator:locator + 4] != ZIP64_LOCATOR_SIGNATURE:
            raise DirectoryError("not a zip file: no zip64 end record locator")
        record = struct.unpack("<Q", tail[locator + 8:locator + 16])[0] - tail_start
        if not 0 <= record <= locator - 56 or tail[record:record + 4] != ZIP64_END_SIGNATURE:
            raise DirectoryError("not a zip file: the zip64 end record is not where its locator says")
        count, directory_size, directory_offset = struct.unpack("<QQQ", tail[record + 32:record + 56])
        end = tail_start + record
    if directory_offset + directory_size != end or end > size:
        raise DirectoryError(f"its zip directory ({directory_size} bytes at {directory_offset}) does not end where "
                             "its end record is")
    if count * CENTRAL_HEADER_SIZE > directory_size:
        raise DirectoryError(f"its zip directory claims {count} entries in {directory_size} bytes")
    return int(count), int(directory_offset), int(directory_size)


def comment(tail: bytes) -> bytes:
    """The zip's comment (after its end record, in the file's ``tail``)."""
    at = _end_record(tail)
    length = struct.unpack("<H", tail[at + 20:at + 22])[0]
    return tail[at + END_SIZE:at + END_SIZE + length]


def _end_record(tail: bytes) -> int:
    """Where the end of central directory record starts in ``tail``."""
    at = tail.rfind(END_SIGNATURE, max(0, len(tail) - END_SIZE - MAX_COMMENT))
    if at < 0 or at + END_SIZE > len(tail):
        raise DirectoryError("not a zip file: no end of central directory record")
    return at


def parse(directory: bytes, count: int) -> Entries:
    """The ``count`` entries of a central ``directory``."""
    buffer = np.frombuffer(directory, np.uint8)
    fields = np.zeros((count, 10), np.int64)
    problem, index = _parse(buffer, fields)
    if problem != OK:
        raise DirectoryError(f"{PROBLEMS[problem]} (entry {index})")
    starts, name_lengths, key_lengths, hashes = fields[:, 6], fields[:, 5], fields[:, 7], fields[:, 8]
    numbers = fields[:, 4]
    chunk = numbers >= 0
    key_ids = np.full(count, -1, np.int64)
    keys: list[str] = []
    if chunk.any():
        _, first, inverse = np.unique(hashes[chunk], return_index=True, return_inverse=True)
        representatives = np.flatnonzero(chunk)[first]
        key_ids[chunk] = inverse
        if not _same_keys(buffer, starts[chunk], key_lengths[chunk], starts[representatives][inverse],
                          key_lengths[representatives][inverse]):
            raise DirectoryError("its zip directory has chunk names whose array keys collide")
        keys = [_name(directory, starts[r], key_lengths[r]) for r in representatives]
    others = {int(i): _name(directory, starts[i], name_lengths[i]) for i in np.flatnonzero(~chunk)}
    return Entries(fields[:, 0], fields[:, 1], fields[:, 2], fields[:, 3], fields[:, 9].astype(np.uint32),
                   name_lengths, numbers, key_ids, keys, others)


def _name(directory: bytes, start: int, length: int) -> str:
    return directory[start:start + length].decode("utf-8", "replace")


@numba.njit(cache=True, nogil=True, inline="always")
def _u16(b, at):  # pragma: no cover
    return np.int64(b[at]) | (np.int64(b[at + 1]) << 8)


@numba.njit(cache=True, nogil=True, inline="always")
def _u32(b, at):  # pragma: no cover
    return _u16(b, at) | (_u16(b, at + 2) << 16)


@numba.njit(cache=True, nogil=True)
def _parse(b, fields):  # pragma: no cover
    """Per entry: offset, stored size, size, method, chunk number, name length, name start, key length, key
    hash (FNV-1a), CRC-32. Returns (problem, entry)."""
    at = 0
    for i in range(fields.shape[0]):
        if at + CENTRAL_HEADER_SIZE > len(b):
            return SHORT, i
        if not (b[at] == 0x50 and b[at + 1] == 0x4B and b[at + 2] == 1 and b[at + 3] == 2):
            return BAD_SIGNATURE, i
        method, stored, size = _u16(b, at + 10), _u32(b, at + 20), _u32(b, at + 24)
        name_length, extra_length, comment_length = _u16(b, at + 28), _u16(b, at + 30), _u16(b, at + 32)
        offset = _u32(b, at + 42)
        name = at + CENTRAL_HEADER_SIZE
        end = name + name_length + extra_length + comment_length
        if end > len(b):
            return SHORT, i
        if stored == 0xFFFFFFFF or size == 0xFFFFFFFF or offset == 0xFFFFFFFF:  # zip64: 8-byte values in an extra
            e, found = name + name_length, False
            while e + 4 <= name + name_length + extra_length:
                tag, length = _u16(b, e), _u16(b, e + 2)
                if e + 4 + length > name + name_length + extra_length:
                    return BAD_ZIP64, i
                if tag == 1:
                    p, found = e + 4, True
                    for which in range(3):
                        value = size if which == 0 else stored if which == 1 else offset
                        if value == 0xFFFFFFFF:
                            if p + 8 > e + 4 + length:
                                return BAD_ZIP64, i
                            value = _u32(b, p) | (_u32(b, p + 4) << 32)
                            if value < 0:
                                return BAD_ZIP64, i
                            p += 8
                            if which == 0:
                                size = value
                            elif which == 1:
                                stored = value
                            else:
                                offset = value
                    break
                e += 4 + length
            if not found:
                return BAD_ZIP64, i
        # a chunk's name is <key>/c/<digits>
        j, number, scale = name + name_length - 1, np.int64(0), np.int64(1)
        while j >= name and 48 <= b[j] <= 57 and name + name_length - 1 - j < MAX_NUMBER_DIGITS:
            number += (np.int64(b[j]) - 48) * scale
            scale *= 10
            j -= 1
        digits = name + name_length - 1 - j
        key_length = name_length
        if digits > 0 and j >= name + 2 and b[j] == 47 and b[j - 1] == 99 and b[j - 2] == 47:
            key_length = j - 2 - name
        else:
            number = -1
        h = np.uint64(14695981039346656037)
        for k in range(name, name + key_length):
            h = (h ^ np.uint64(b[k])) * np.uint64(1099511628211)
        fields[i, 0], fields[i, 1], fields[i, 2], fields[i, 3] = offset, stored, size, method
        fields[i, 4], fields[i, 5], fields[i, 6], fields[i, 7] = number, name_length, name, key_length
        fields[i, 8], fields[i, 9] = np.int64(h >> np.uint64(1)), _u32(b, at + 16)
        at = end
    return OK, -1


@numba.njit(cache=True, nogil=True)
def _same_keys(b, starts, lengths, others, other_lengths):  # pragma: no cover
    for i in range(len(starts)):
        if lengths[i] != other_lengths[i]:
            return False
        for k in range(lengths[i]):
            if b[starts[i] + k] != b[others[i] + k]:
                return False
    return True
