"""Reading a Zarr v3 shard by exact byte ranges.

The zip directory and every ``zarr.json`` sit at the end of the file (see ``writer.py``): one read of the
tail (two for very large shards) gives each chunk's byte range and CRC, cached per process. A read of
jets ``[start, stop)`` then fetches the chunks of the whole units covering them (one contiguous range per
unit in the unit-grouped layout), checks each chunk's CRC, and Blosc-decodes it straight into the output.
"""

from __future__ import annotations

import json
import struct
import zipfile
import zlib
from dataclasses import dataclass

import numpy as np
from numcodecs import blosc

from jetstore.store.format.base import MIN_GAP, TAIL_BYTES, MetadataCache, ReadPlan, ShardReader
from jetstore.store.format.zarr.writer import COUNTS, JETS
from jetstore.store.layout import Selection
from jetstore.store.ranges import SparseFile, coalesce
from jetstore.store.table import BlockData, JetTable

LOCAL_HEADER = struct.Struct("<4s22xHH")  # signature, ..., file name length, extra field length
LOCAL_HEADER_SIZE = 30
CACHE = MetadataCache()


@dataclass(frozen=True)
class ArrayIndex:
    """Where every chunk of one array lies in the zip: header offset, stored size, CRC-32."""

    dtype: np.dtype
    chunk: int
    size: int
    offsets: np.ndarray       # local header
    data_offsets: np.ndarray  # stored bytes (local header + name, no extra field: as jetstore writes)
    sizes: np.ndarray
    crcs: np.ndarray


@dataclass(frozen=True)
class ShardIndex:
    arrays: dict[str, ArrayIndex]
    n_jets: int
    unit_jets: int
    unit_offsets: dict[str, np.ndarray]


class ZarrShardReader(ShardReader):
    def __init__(self, *args, cache_key: tuple[str, str] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.index: ShardIndex = CACHE.get(cache_key or (self.source.path, ""), self._load_index)

    def plan(self, start: int, stop: int, selection: Selection) -> ReadPlan:
        index = self.index
        first, last = start // index.unit_jets, -(-stop // index.unit_jets)
        spans: list[tuple[str, int, int]] = []  # (array, first chunk, last chunk + 1)
        for name in selection.jets:
            spans.append((f"{JETS}/{name}", first, last))
        for block, features in selection.blocks.items():
            spans.append((f"{block}/{COUNTS}", first, last))
            offsets = index.unit_offsets[block]
            lo, hi = int(offsets[first]), int(offsets[last])
            for name in features:
                array = self._array(f"{block}/{name}")
                spans.append((f"{block}/{name}", lo // array.chunk, -(-hi // array.chunk)))
        ranges = []
        for key, begin, end in spans:
            array = self._array(key)
            headers, ends = array.offsets[begin:end], array.data_offsets[begin:end] + array.sizes[begin:end]
            if (headers < 0).any():
                raise self.damaged(f"chunk {key}/c/{begin + int(np.argmin(headers))} is missing")
            ranges += zip(headers.tolist(), ends.tolist(), strict=True)
        needed = sum(b - a for a, b in ranges)
        return ReadPlan(start, stop, selection, coalesce(ranges, max(MIN_GAP, needed // 2)), tuple(spans))

    def decode(self, plan: ReadPlan, pieces: list[bytes]) -> JetTable:
        index = self.index
        unit = index.unit_jets
        first = plan.start // unit
        views = [memoryview(piece) for piece in pieces]
        arrays, where = {}, iter(plan.fetch.where)
        for key, begin, end in plan.parts:
            arrays[key] = self._decode(key, begin, end, views, where)
        lo, hi = plan.start - first * unit, plan.stop - first * unit
        jets = {name: arrays[f"{JETS}/{name}"][lo:hi] for name in plan.selection.jets}
        blocks = {}
        for block, features in plan.selection.blocks.items():
            counts = arrays[f"{block}/{COUNTS}"]
            v0 = int(index.unit_offsets[block][first]) + int(counts[:lo].sum())
            v1 = v0 + int(counts[lo:hi].sum())
            values = {}
            for key, begin, _ in plan.parts:
                name = key.partition("/")[2]
                if key.startswith(f"{block}/") and name in features:
                    base = begin * self.index.arrays[key].chunk
                    values[name] = arrays[key][v0 - base:v1 - base]
            blocks[block] = BlockData(counts[lo:hi], values)
        return JetTable(jets, blocks)

    # -- chunks ------------------------------------------------------------------------------------------

    def _array(self, key: str) -> ArrayIndex:
        try:
            return self.index.arrays[key]
        except KeyError:
            raise self.damaged(f"no array '{key}'") from None

    def _decode(self, key: str, begin: int, end: int, views: list[memoryview], where) -> np.ndarray:
        """Chunks ``[begin, end)`` of an array, CRC-checked and Blosc-decoded into one array (the last chunk
        padded); ``where`` gives each chunk's fetched piece and offset in reading order."""
        array = self.index.arrays[key]
        size = array.chunk
        out = np.empty((end - begin) * size, dtype=array.dtype)
        stored, crcs = array.sizes[begin:end].tolist(), array.crcs[begin:end].tolist()
        for i in range(end - begin):
            piece, offset = next(where)
            view = views[piece]
            signature, name_length, extra = LOCAL_HEADER.unpack_from(view, offset)
            start = offset + LOCAL_HEADER_SIZE + name_length + extra
            data = view[start:start + stored[i]]
            if signature != b"PK\x03\x04" or len(data) < stored[i]:
                data = self._refetch(key, begin + i)
            if zlib.crc32(data) != crcs[i]:
                raise self.damaged(f"chunk {key}/c/{begin + i} fails its CRC check")
            try:
                blosc.decompress(data, out[i * size:(i + 1) * size])  # releases the GIL
            except Exception as exc:
                raise self.damaged(f"chunk {key}/c/{begin + i} does not decode ({exc})") from None
        return out

    def _refetch(self, key: str, chunk: int) -> memoryview:
        """A chunk's bytes read on their own (a writer that put extra fields in local headers: not jetstore)."""
        array = self.index.arrays[key]
        header = int(array.offsets[chunk])
        raw = self.guard(lambda: self.source.fetch([(header, int(array.data_offsets[chunk]) + 1024)])[0])
        signature, name_length, extra = LOCAL_HEADER.unpack_from(raw)
        if signature != b"PK\x03\x04":
            raise self.damaged(f"bad zip entry header for {key}/c/{chunk}")
        begin = header + LOCAL_HEADER_SIZE + name_length + extra
        end = begin + int(array.sizes[chunk])
        return memoryview(self.guard(lambda: self.source.fetch([(begin, end)])[0]))

    # -- the index ---------------------------------------------------------------------------------------

    def _load_index(self) -> ShardIndex:
        return self.guard(self._parse_index)

    def _parse_index(self) -> ShardIndex:
        source = self.source
        start, tail = source.tail(TAIL_BYTES)
        sparse = SparseFile(source.size, {start: tail}, lambda a, b: source.fetch([(a, b)])[0])
        try:
            archive = zipfile.ZipFile(sparse)
        except (zipfile.BadZipFile, OSError, ValueError) as exc:
            raise self.damaged(f"not a zip file: {exc}") from None
        infos = archive.infolist()
        documents = [info for info in infos if info.filename.endswith("zarr.json")]
        if documents:  # fetch every metadata document at once if the tail did not hold them
            begin = min(info.header_offset for info in documents)
            if begin < start:
                sparse.pieces.append((begin, source.fetch([(begin, start)])[0]))
        try:
            metadata = {info.filename.removesuffix("zarr.json").rstrip("/"): json.loads(archive.read(info))
                        for info in documents}
        except (zipfile.BadZipFile, OSError, ValueError) as exc:
            raise self.damaged(f"unreadable metadata: {exc}") from None
        chunk_entries: dict[str, list[tuple[int, int, int, int]]] = {}
        for info in infos:
            key, separator, number = info.filename.rpartition("/c/")
            if separator and number.isdigit():
                chunk_entries.setdefault(key, []).append((int(number), info.header_offset, info.compress_size,
                                                          info.CRC))
        try:
            attributes = metadata[""]["attributes"]
            arrays = {key: _array_index(key, document, chunk_entries.get(key, []))
                      for key, document in metadata.items() if document.get("node_type") == "array"}
            index = ShardIndex(arrays, int(attributes["n_jets"]), int(attributes["unit_jets"]),
                               {b: np.asarray(o, np.int64) for b, o in attributes["unit_offsets"].items()})
        except (KeyError, TypeError, ValueError) as exc:
            raise self.damaged(f"malformed metadata ({type(exc).__name__}: {exc})") from None
        if index.n_jets != self.n_jets:
            raise self.damaged(f"it holds {index.n_jets} jets, the manifest says {self.n_jets}")
        return index


def _array_index(key: str, document: dict, entries: list[tuple[int, int, int, int]]) -> ArrayIndex:
    (size,), (chunk,) = document["shape"], document["chunk_grid"]["configuration"]["chunk_shape"]
    n_chunks = -(-size // chunk)
    offsets = np.full(n_chunks, -1, np.int64)
    data_offsets = np.zeros(n_chunks, np.int64)
    sizes = np.zeros(n_chunks, np.int64)
    crcs = np.zeros(n_chunks, np.uint32)
    for number, offset, stored, crc in entries:
        if number < n_chunks:
            offsets[number], sizes[number], crcs[number] = offset, stored, crc
            data_offsets[number] = offset + LOCAL_HEADER_SIZE + len(f"{key}/c/{number}")
    return ArrayIndex(np.dtype(document["data_type"]), int(chunk), int(size), offsets, data_offsets, sizes, crcs)
