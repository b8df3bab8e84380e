"""Reading a Zarr v3 shard by exact byte ranges.

The zip directory and every ``zarr.json`` sit at the end of the file (see ``writer.py``): one read of the
tail (two for very large shards) gives each chunk's byte range and CRC, cached per process. A read of
jets ``[start, stop)`` then fetches the chunks of the whole units covering them (one contiguous range per
unit in the unit-grouped layout), checks each chunk's CRC, and Blosc-decodes it straight into the output.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field

import numpy as np

from jetstore.store.format.base import MIN_GAP, TAIL_BYTES, MetadataCache, ReadPlan, ShardReader
from jetstore.store.format.zarr.chunks import LOCAL_HEADER_SIZE, PROBLEMS, decode_chunks
from jetstore.store.format.zarr.writer import COUNTS, JETS
from jetstore.store.layout import Selection
from jetstore.store.ranges import SparseFile, coalesce
from jetstore.store.table import BlockData, JetTable

CACHE = MetadataCache()
MAX_PLANS = 1024  # per shard


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
class ZipParts:
    """What a plan's fetched bytes hold: per array (key, first chunk, end chunk, byte offset in the
    decoded output), and per chunk its header, sizes, CRC and output place."""

    layout: tuple[tuple[str, int, int, int], ...]
    bytes: int
    chunks: dict[str, np.ndarray]
    where: np.ndarray  # per chunk: (fetched piece, offset of its header there)


@dataclass(frozen=True)
class ShardIndex:
    arrays: dict[str, ArrayIndex]
    n_jets: int
    unit_jets: int
    unit_offsets: dict[str, np.ndarray]
    plans: dict = field(default_factory=dict, compare=False)


class ZarrShardReader(ShardReader):
    def __init__(self, *args, cache_key: tuple[str, str] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.index: ShardIndex = CACHE.get(cache_key or (self.source.path, ""), self._load_index)

    def plan(self, start: int, stop: int, selection: Selection) -> ReadPlan:
        """The chunks holding jets ``[start, stop)`` (plans are kept with the shard's index: epochs read the
        same units again)."""
        key = (start, stop, selection)
        plan = self.index.plans.get(key)
        if plan is None:
            plan = self._plan(start, stop, selection)
            if len(self.index.plans) < MAX_PLANS:
                self.index.plans[key] = plan
        return plan

    def _plan(self, start: int, stop: int, selection: Selection) -> ReadPlan:
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
        columns = {name: [] for name in ("header", "end", "name", "size", "crc", "out", "out_size")}
        layout, position = [], 0
        for key, begin, end in spans:
            array = self._array(key)
            headers = array.offsets[begin:end]
            if (headers < 0).any():
                raise self.damaged(f"chunk {key}/c/{begin + int(np.argmin(headers))} is missing")
            width = array.chunk * array.dtype.itemsize
            columns["header"].append(headers)
            columns["end"].append(array.data_offsets[begin:end] + array.sizes[begin:end])
            columns["name"].append(array.data_offsets[begin:end] - headers - LOCAL_HEADER_SIZE)
            columns["size"].append(array.sizes[begin:end])
            columns["crc"].append(array.crcs[begin:end].astype(np.uint64))
            columns["out"].append(position + np.arange(end - begin, dtype=np.int64) * width)
            columns["out_size"].append(np.full(end - begin, width, np.int64))
            layout.append((key, begin, end, position))
            position += -(-(end - begin) * width // 8) * 8  # 8-byte aligned regions
        chunks = {name: np.concatenate(parts) if parts else np.zeros(0, np.int64) for name, parts in columns.items()}
        ranges = list(zip(chunks["header"].tolist(), chunks["end"].tolist(), strict=True))
        needed = sum(b - a for a, b in ranges)
        fetch = coalesce(ranges, max(MIN_GAP, needed // 2))
        where = np.asarray(fetch.where, np.int64).reshape(-1, 2)
        return ReadPlan(start, stop, selection, fetch, ZipParts(tuple(layout), position, chunks, where))

    def decode(self, plan: ReadPlan, pieces: list[bytes]) -> JetTable:
        parts: ZipParts = plan.parts
        out = np.empty(parts.bytes, np.uint8)
        chunks, where = parts.chunks, parts.where
        for piece, data in enumerate(pieces):
            mine = np.nonzero(where[:, 0] == piece)[0] if len(pieces) > 1 else np.arange(len(where))
            buffer = np.frombuffer(data, np.uint8)
            failed, problem = decode_chunks(buffer, where[mine, 1], chunks["name"][mine], chunks["size"][mine],
                                            chunks["crc"][mine], out, chunks["out"][mine], chunks["out_size"][mine])
            if failed >= 0:
                self._failure(plan, int(mine[failed]), problem)
        arrays = {}
        for key, begin, end, position in parts.layout:
            array = self.index.arrays[key]
            arrays[key] = out[position:position + (end - begin) * array.chunk * array.dtype.itemsize].view(array.dtype)
        return self._table(plan, arrays)

    def _table(self, plan: ReadPlan, arrays: dict[str, np.ndarray]) -> JetTable:
        """The jets of ``plan`` from its decoded arrays (whole chunks)."""
        unit = self.index.unit_jets
        first = plan.start // unit
        lo, hi = plan.start - first * unit, plan.stop - first * unit
        jets = {name: arrays[f"{JETS}/{name}"][lo:hi] for name in plan.selection.jets}
        blocks = {}
        begins = {key: begin for key, begin, _, _ in plan.parts.layout}
        for block, features in plan.selection.blocks.items():
            counts = arrays[f"{block}/{COUNTS}"]
            spans = self._value_spans(block, first, counts, lo, hi)
            values = {}
            for name in features:
                key = f"{block}/{name}"
                base = begins[key] * self.index.arrays[key].chunk
                parts = [arrays[key][a - base:b - base] for a, b in spans]
                values[name] = parts[0] if len(parts) == 1 else np.concatenate(parts)
            blocks[block] = BlockData(counts[lo:hi], values)
        return JetTable(jets, blocks)

    def _value_spans(self, block: str, first: int, counts: np.ndarray, lo: int, hi: int) -> list[tuple[int, int]]:
        """Value positions ``[a, b)`` of the jets ``[lo, hi)`` (counted from unit ``first``'s first jet), one span
        per unit: every unit's values start at its ``unit_offsets`` entry (after the padding of the previous unit
        in unit-aligned shards)."""
        unit, starts = self.index.unit_jets, self.index.unit_offsets[block]
        spans = []
        for k in range(lo // unit, max(lo // unit + 1, -(-hi // unit))):
            a, b = max(lo, k * unit), min(hi, (k + 1) * unit)
            begin = int(starts[first + k]) + int(counts[k * unit:a].sum())
            spans.append((begin, begin + int(counts[a:b].sum())))
        return spans or [(0, 0)]

    def _failure(self, plan: ReadPlan, chunk: int, problem: int) -> None:
        """Name the chunk that failed to decode (the global chunk number within its array)."""
        number = chunk
        for key, begin, end, _ in plan.parts.layout:
            if number < end - begin:
                raise self.damaged(f"chunk {key}/c/{begin + number} {PROBLEMS[problem]}")
            number -= end - begin
        raise self.damaged(f"chunk {chunk} {PROBLEMS[problem]}")

    def _array(self, key: str) -> ArrayIndex:
        try:
            return self.index.arrays[key]
        except KeyError:
            raise self.damaged(f"no array '{key}'") from None

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
