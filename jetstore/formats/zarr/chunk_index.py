"""A Zarr shard's chunk index: where every zip entry lies, in one small compressed member the zip's end record
points at, so a reader needs neither the zip's central directory nor Python per entry to find a chunk.

Why: a 100k-jet shard of 256-jet units holds ~30,000 chunk entries, and its central directory ~2.2 MB (a name
and 46 bytes per entry). A tiny epoch over S3 read the directories of the shards it touched: half the bytes of a
2,048-jet epoch of 270k jets (3.2% of the dataset, against 3.0% for its units). The index holds only what the
layout does not already say: per chunk its array, stored size and CRC-32 (~1/10 of the directory).

The layout it describes (``writer.py``, ``archive.py``): entries lie back to back from offset 0, each a 30-byte
local header, its name and its stored bytes (no extra fields, no data descriptors): the chunks, grouped unit by
unit, each array's chunks in chunk order; then the index member ``jetstore.chunk_index``; then the metadata
documents; then the central directory. Every entry's offset therefore follows from the names and sizes of those
before it, and a chunk's number is its rank among its array's chunks (its name ``<key>/c/<number>``).

The member (version 1) is one zlib stream of a JSON header line, then three columns over the chunks in zip order
(array number ``<u2``, stored size ``<u4``, CRC-32 ``<u4``), each byte-transposed (the sizes' high bytes then
compress to nothing)::

    {"format": "jetstore.chunk_index", "version": 1, "keys": [<array key>, ...], "chunks": <n>,
     "documents": [[<name>, <size>, <CRC-32>], ...]}\\n<key ids><sizes><CRCs>

The end of central directory record's comment (in the tail a reader fetches first) says where the member's bytes
are, and their CRC-32: ``jetstore.chunk_index/1 offset=<o> size=<s> crc=<8 hex digits>``. Zip readers show the
comment and ignore it; Zarr ignores the member (no ``zarr.json`` names it; zarr-python lists it with a warning
only when told not to use the consolidated metadata). A shard without the comment (written before) is read by its
central directory. Nothing in the index is trusted: its CRC, its counts against the end record, and every offset
it implies against where the comment and the end record say the member and the directory are, are checked
before use; a chunk's own CRC is checked when it is decoded.
"""

from __future__ import annotations

import json
import re
import zlib
from dataclasses import dataclass

import numpy as np

from jetstore.formats.zarr import archive, directory
from jetstore.formats.zarr.chunks import LOCAL_HEADER_SIZE

NAME = FORMAT = "jetstore.chunk_index"  # the member's name, and the format its header and the pointer name
VERSION = 1
COLUMNS: tuple[np.dtype, ...] = (np.dtype("<u2"), np.dtype("<u4"), np.dtype("<u4"))  # array number, stored size, CRC-32
ROW = sum(dtype.itemsize for dtype in COLUMNS)  # bytes per chunk
MAX_KEYS = 1 << 16
MAX_HEADER = 4 << 20  # the JSON header (array keys, document names)
_PREFIX = f"{FORMAT}/{VERSION} ".encode()  # the end record's comment: the pointer, this version's
_POINTER = re.compile(re.escape(_PREFIX) + rb"offset=(\d{1,15}) size=(\d{1,15}) crc=([0-9a-f]{8})")


class ChunkIndexError(ValueError):
    """The chunk index is damaged or does not fit the shard (the message says how)."""


@dataclass(frozen=True)
class Pointer:
    """Where the index member's bytes lie in the shard, and their CRC-32."""

    offset: int
    size: int
    crc: int


# -- writing -----------------------------------------------------------------------------------------------

def build(chunks: archive.Entries, keys: list[str], key_ids: np.ndarray,
          documents: archive.Entries) -> tuple[archive.Entries, bytes]:
    """The index member of a shard whose zip holds ``chunks`` (chunk i of array ``keys[key_ids[i]]``), then the
    member, then ``documents``; and the end record's comment pointing at it."""
    numbers = _ranks(key_ids)
    if [f"{keys[k]}/c/{n}" for k, n in zip(key_ids.tolist(), numbers.tolist(), strict=True)] != chunks.names:
        raise AssertionError("chunk index: the chunks are not in chunk order within each array")
    header = {"format": FORMAT, "version": VERSION, "keys": keys, "chunks": len(chunks.names),
              "documents": [[name, int(size), int(crc)]
                            for name, size, crc in zip(documents.names, documents.sizes, documents.crcs, strict=True)]}
    columns = (key_ids, chunks.sizes, chunks.crcs)
    data = zlib.compress(json.dumps(header).encode() + b"\n" + b"".join(
        _transposed(np.asarray(column).astype(dtype)) for column, dtype in zip(columns, COLUMNS, strict=True)), 6)
    name_bytes = sum(len(name.encode()) for name in chunks.names)
    offset = len(chunks.names) * LOCAL_HEADER_SIZE + name_bytes + int(np.sum(chunks.sizes)) \
        + LOCAL_HEADER_SIZE + len(NAME)
    crc = zlib.crc32(data)
    entry = archive.Entries([NAME], np.frombuffer(data, np.uint8), np.zeros(1, np.int64),
                            np.array([len(data)], np.int64), np.array([crc], np.int64))
    return entry, _PREFIX + f"offset={offset} size={len(data)} crc={crc:08x}".encode()


def _transposed(column: np.ndarray) -> bytes:
    return column.view(np.uint8).reshape(-1, column.dtype.itemsize).T.tobytes()


# -- reading -----------------------------------------------------------------------------------------------

def pointer(comment: bytes, directory_offset: int) -> Pointer | None:
    """The index's place from the end record's ``comment`` (the index lies before the central directory, at
    ``directory_offset``); None for a shard without one (written before the index, or by another tool) or of a
    later version (read by its directory)."""
    if not comment.startswith(_PREFIX):
        return None
    match = _POINTER.fullmatch(comment)
    if match is None:
        raise ChunkIndexError(f"its chunk index pointer is malformed ({comment[:80]!r})")
    found = Pointer(int(match[1]), int(match[2]), int(match[3], 16))
    if found.offset + found.size > directory_offset:
        raise ChunkIndexError(f"its chunk index ({found.size} bytes at {found.offset}) does not lie before its zip "
                              f"directory (at {directory_offset})")
    return found


def entries(data: bytes, where: Pointer, count: int, directory_offset: int) -> directory.Entries:
    """The zip's entries, as its central directory gives them (see :mod:`directory`), from the index member's
    ``data``; ``count`` and ``directory_offset``: what the end record says."""
    if len(data) != where.size or zlib.crc32(data) != where.crc:
        raise ChunkIndexError("its chunk index fails its CRC check")
    line, _, raw = _inflated(data, MAX_HEADER + count * ROW).partition(b"\n")
    try:
        header = json.loads(line)
        keys, n, documents = header["keys"], header["chunks"], header["documents"]
        ok = header["format"] == FORMAT and header["version"] == VERSION and _counts(n) \
            and isinstance(keys, list) and all(isinstance(k, str) for k in keys) and len(set(keys)) == len(keys) \
            and len(keys) < MAX_KEYS and isinstance(documents, list) \
            and all(isinstance(d, list) and len(d) == 3 and isinstance(d[0], str) and _counts(d[1]) and _counts(d[2])
                    for d in documents)
    except (ValueError, KeyError, TypeError, RecursionError):
        ok = False
    if not ok:
        raise ChunkIndexError("its chunk index has a malformed header")
    if n + 1 + len(documents) != count:
        raise ChunkIndexError(f"its chunk index lists {n + 1 + len(documents)} zip entries, its end record {count}")
    key_ids, sizes, crcs = _columns(raw, n)
    if n and int(key_ids.max()) >= len(keys):
        raise ChunkIndexError("its chunk index names an array it does not list")
    numbers = _ranks(key_ids)
    key_lengths = np.array([len(key.encode()) for key in keys] or [0], np.int64)
    digits = 1 + sum((numbers >= 10 ** k).astype(np.int64) for k in range(1, 19))
    names = [NAME] + [name for name, _, _ in documents]
    name_lengths = np.concatenate([key_lengths[key_ids] + len("/c/") + digits,
                                   [len(name.encode()) for name in names]]).astype(np.int64)
    stored = np.concatenate([sizes, [where.size], [size for _, size, _ in documents]]).astype(np.int64)
    ends = np.cumsum(LOCAL_HEADER_SIZE + name_lengths + stored)
    offsets = np.concatenate([[0], ends[:-1]]).astype(np.int64)
    if offsets[n] + LOCAL_HEADER_SIZE + len(NAME) != where.offset or ends[-1] != directory_offset:
        raise ChunkIndexError("its chunk index does not fit the zip's layout")
    others = {n + i: name for i, name in enumerate(names)}
    return directory.Entries(offsets, stored, stored.copy(), np.zeros(count, np.int64),
                             np.concatenate([crcs, [where.crc], [crc for _, _, crc in documents]]).astype(np.uint32),
                             name_lengths, np.concatenate([numbers, np.full(len(names), -1)]).astype(np.int64),
                             np.concatenate([key_ids, np.full(len(names), -1)]).astype(np.int64), list(keys), others)


def _inflated(data: bytes, limit: int) -> bytes:
    """The zlib stream ``data`` decompressed, refused beyond ``limit`` bytes."""
    inflate = zlib.decompressobj()
    try:
        raw = inflate.decompress(data, limit + 1)
    except zlib.error:
        raise ChunkIndexError("its chunk index does not decompress") from None
    if len(raw) > limit or not inflate.eof or inflate.unused_data:
        raise ChunkIndexError("its chunk index is not one zlib stream of the size its entries allow")
    return raw


def _columns(raw: bytes, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The three columns of ``n`` chunks from their bytes."""
    if len(raw) != n * ROW:
        raise ChunkIndexError(f"its chunk index does not hold {n} chunks")
    out, at = [], 0
    for dtype in COLUMNS:
        width = n * dtype.itemsize
        column = np.frombuffer(raw[at:at + width], np.uint8).reshape(dtype.itemsize, n).T.copy().view(dtype)
        out.append(column.reshape(n).astype(np.int64))
        at += width
    return out[0], out[1], out[2]


def _ranks(key_ids: np.ndarray) -> np.ndarray:
    """Per chunk, how many chunks of its array come before it (its chunk number)."""
    key_ids = np.asarray(key_ids, np.int64)
    order = np.argsort(key_ids, kind="stable")
    ranks = np.empty(len(key_ids), np.int64)
    sorted_ids = key_ids[order]
    first = np.searchsorted(sorted_ids, sorted_ids)  # where each chunk's array begins in the sorted order
    ranks[order] = np.arange(len(key_ids)) - first
    return ranks


def _counts(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1 << 48
