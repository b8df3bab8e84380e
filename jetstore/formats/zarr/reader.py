"""Reading a Zarr v3 shard by exact byte ranges.

The chunk index, every ``zarr.json`` and the zip directory sit at the end of the file (see ``writer.py``): the
tail's zip comment points at the index, and one more read (the index and the documents after it) gives each
chunk's byte range and CRC, cached per process; shards written before the index are read by their zip
directory (the tail, then the rest of the directory and the documents before it). A read of
jets ``[start, stop)`` then fetches the chunks of the whole units covering them (one contiguous range per
unit in the unit-grouped layout), checks each chunk's CRC, and Blosc-decodes it straight into the output.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import cast

import numpy as np

from jetstore.errors import echo
from jetstore.formats.base import MAX_CHUNK_BYTES, MIN_GAP, MetadataCache, ReadPlan, ShardReader
from jetstore.formats.zarr import chunk_index, directory
from jetstore.formats.zarr.chunks import LOCAL_HEADER_SIZE, PROBLEMS, decode_chunks
from jetstore.formats.zarr.layout import COUNTS, JETS, UNIT_ALIGNED
from jetstore.formats.zarr.plans import ArrayIndex, SpanRule, ZipParts, chunk_table, unit_chunks
from jetstore.io.ranges import SparseFile
from jetstore.model.layout import Selection
from jetstore.model.table import BlockData, JetTable

CACHE = MetadataCache()
MAX_DOCUMENT_BYTES = 4 << 20  # one zarr.json (the root's lists every unit's block offsets)
MAX_UNIT_JETS = 1 << 24  # as the manifest schema bounds layout.chunk_jets
BLOSC_OVERHEAD = 16  # Blosc never stores more than the data plus its 16-byte header


@dataclass(frozen=True)
class ShardIndex:
    arrays: dict[str, ArrayIndex]
    n_jets: int
    unit_jets: int
    unit_offsets: dict[str, np.ndarray]
    table: np.ndarray  # every array's chunks (:func:`~jetstore.formats.zarr.plans.chunk_table`)
    rules: dict[Selection, SpanRule] = field(default_factory=dict, compare=False)


class ZarrShardReader(ShardReader):
    def __init__(self, *args, cache_key: tuple[str, str] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.index: ShardIndex = CACHE.get(cache_key or (self.source.path, ""), self._load_index)

    def plan(self, start: int, stop: int, selection: Selection) -> ReadPlan:
        """The chunks holding jets ``[start, stop)``."""
        index, rule = self.index, self._rule(selection)
        first = np.array([start // index.unit_jets])
        begins, ends = rule.spans(first, np.array([-(-stop // index.unit_jets)]))
        for column, key in enumerate(rule.keys):
            headers = self._array(key).offsets[begins[0, column]:ends[0, column]]
            if (headers < 0).any():
                raise self.damaged(f"chunk {key}/c/{int(begins[0, column]) + int(np.argmin(headers))} is missing")
        packable = start % index.unit_jets == 0 and stop - start <= index.unit_jets and rule.aligned(first)
        planned = unit_chunks(index.table, rule, begins, ends, MIN_GAP)
        decoded = int(planned.decoded[0])
        self.check_expansion(start, stop, decoded, int(planned.needed[0]))
        return ReadPlan(start, stop, selection, tuple(tuple(r) for r in planned.ranges.tolist()),
                        ZipParts(rule.keys, planned.spans[0], decoded, planned.chunks, planned.where, packable))

    def plan_units(self, bounds: Sequence[tuple[int, int]], selection: Selection) -> list[ReadPlan]:
        """Plans of whole units (each ``[start, stop)`` a unit, from its first jet to its end), made together
        (:func:`~jetstore.formats.zarr.plans.unit_chunks`: one kernel call, however many units), each the plan
        :meth:`plan` gives. Reads of anything else, and damaged shards (so that the
        error names the chunk), go through :meth:`plan`."""
        index = self.index
        edges = np.array(bounds, np.int64).reshape(-1, 2)
        first = edges[:, 0] // index.unit_jets
        rule = self._rule(selection)
        if (edges[:, 0] % index.unit_jets).any() or not rule.aligned(first) or \
                (edges[:, 1] != np.minimum(edges[:, 0] + index.unit_jets, index.n_jets)).any():
            return [self.plan(a, b, selection) for a, b in bounds]
        planned = unit_chunks(index.table, rule, *rule.spans(first, first + 1), MIN_GAP)
        if (planned.chunks["header"] < 0).any():
            return [self.plan(a, b, selection) for a, b in bounds]
        plans = []
        ranges = [tuple(r) for r in planned.ranges.tolist()]
        for k, ((start, stop), a, b, ra, rb, decoded, needed) in enumerate(zip(
                edges.tolist(), planned.bounds[:-1].tolist(), planned.bounds[1:].tolist(),
                planned.range_bounds[:-1].tolist(), planned.range_bounds[1:].tolist(), planned.decoded.tolist(),
                planned.needed.tolist(), strict=True)):
            self.check_expansion(start, stop, decoded, needed)
            parts = ZipParts(rule.keys, planned.spans[k], decoded, {n: c[a:b] for n, c in planned.chunks.items()},
                             planned.where[a:b], True)
            plans.append(ReadPlan(start, stop, selection, tuple(ranges[ra:rb]), parts))
        return plans

    def _rule(self, selection: Selection) -> SpanRule:
        """Which chunks hold a unit's jets of ``selection`` (kept with the shard's index)."""
        rule = self.index.rules.get(selection)
        if rule is None:
            for block, features in selection.blocks.items():
                for name in (COUNTS, *features):
                    self._array(f"{block}/{name}")  # a missing array named
            for name in selection.jets:
                self._array(f"{JETS}/{name}")
            rule = SpanRule.of(self.index.arrays, self.index.unit_offsets, selection)
            self.index.rules[selection] = rule
        return rule

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

    @classmethod
    def decode_window(cls, reads: Sequence[tuple[ShardReader, ReadPlan, list[bytes]]]) -> JetTable:
        """Single-unit plans of one dataset (any of its shards) decoded side by side in two kernel calls for all
        of them (jet arrays and node counts; then node values, placed by the counts), each array's values packed
        plan after plan: a plan's chunks are decoded where the previous plan's values end, over the padding of
        that plan's last chunk (chunks are decoded in place order, so no value is overwritten)."""
        plans = [plan for _, plan, _ in reads]
        if not all(isinstance(r, ZarrShardReader) and p.parts.packable and p.selection == plans[0].selection
                   for r, p, _ in reads):
            return super().decode_window(reads)
        readers = [cast(ZarrShardReader, r) for r, _, _ in reads]
        keys, selection, index = list(plans[0].parts.keys), plans[0].selection, readers[0].index
        dtypes = [index.arrays[key].dtype for key in keys]
        itemsize = np.array([dtype.itemsize for dtype in dtypes], np.int64)
        per_jet = np.array([key.split("/")[0] == JETS or key.split("/")[1] == COUNTS for key in keys])
        sizes = np.array([p.stop - p.start for p in plans], np.int64)
        counts_in = [len(p.parts.where) for p in plans]
        chunks = {name: np.concatenate([p.parts.chunks[name] for p in plans])
                  for name in ("name", "size", "crc", "out_size", "span", "rank")}
        plan_of = np.repeat(np.arange(len(plans)), counts_in)
        pieces = [piece for _, _, ps in reads for piece in ps]
        first_piece = np.cumsum([0] + [len(ps) for _, _, ps in reads])[:-1]
        piece_start = np.cumsum([0] + [len(piece) for piece in pieces])
        where = np.concatenate([p.parts.where for p in plans])
        headers = piece_start[first_piece[plan_of] + where[:, 0]] + where[:, 1]
        buffer = np.frombuffer(b"".join(pieces), np.uint8)
        span, rank, width = chunks["span"], chunks["rank"], chunks["out_size"]
        prefix = np.zeros((len(keys), len(plans)), np.int64)  # items of each array before each plan
        prefix[per_jet] = np.cumsum(sizes) - sizes

        def decode(phase: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            """Decode the chunks of the arrays ``phase`` (mask over spans): (output bytes, each array's offset)."""
            mine = np.nonzero(phase[span])[0]
            mine = mine[np.argsort(span[mine], kind="stable")]  # array by array, plan by plan, in place order
            place = prefix[span[mine], plan_of[mine]] * itemsize[span[mine]] + rank[mine] * width[mine]
            ends = np.zeros(len(keys), np.int64)
            np.maximum.at(ends, span[mine], place + width[mine])
            regions = np.concatenate([[0], np.cumsum(-(-ends // 8) * 8)])  # 8-byte aligned, one per array
            base, out = regions[:-1], np.empty(int(regions[-1]), np.uint8)
            failed, problem = decode_chunks(buffer, headers[mine], chunks["name"][mine], chunks["size"][mine],
                                            chunks["crc"][mine], out, base[span[mine]] + place, width[mine])
            if failed >= 0:
                chunk = int(mine[failed])
                k = int(plan_of[chunk])
                readers[k]._failure(plans[k], chunk - int(np.sum(counts_in[:k])), problem)
            return out, base

        jets_out, jets_base = decode(per_jet)
        total = int(sizes.sum())

        def view(out: np.ndarray, base: np.ndarray, s: int, n: int) -> np.ndarray:
            return out[base[s]:base[s] + n * itemsize[s]].view(dtypes[s])

        nodes = {}
        for block in selection.blocks:
            counts = view(jets_out, jets_base, keys.index(f"{block}/{COUNTS}"), total)
            cumulative = np.concatenate([[0], np.cumsum(counts, dtype=np.int64)])
            nodes[block] = cumulative[np.cumsum(sizes)] - cumulative[np.cumsum(sizes) - sizes]
            room = np.array([_unit_values(r.index, block, p.start) for r, p in zip(readers, plans, strict=True)])
            bad = nodes[block] > room
            if (counts.min(initial=0) < 0) or bad.any():
                k = int(np.argmax(bad)) if bad.any() else int(np.searchsorted(np.cumsum(sizes), np.argmin(counts),
                                                                                "right"))
                raise reads[k][0].damaged(f"the node counts of block '{block}' do not match its unit offsets")
            for name in selection.blocks[block]:
                prefix[keys.index(f"{block}/{name}")] = np.cumsum(nodes[block]) - nodes[block]
        values_out, values_base = decode(~per_jet)
        jets = {name: view(jets_out, jets_base, keys.index(f"{JETS}/{name}"), total) for name in selection.jets}
        blocks = {}
        for block, features in selection.blocks.items():
            n = int(nodes[block].sum())
            blocks[block] = BlockData(view(jets_out, jets_base, keys.index(f"{block}/{COUNTS}"), total),
                                      {name: view(values_out, values_base, keys.index(f"{block}/{name}"), n)
                                       for name in features})
        return JetTable(jets, blocks)

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
            self._check_counts(block, counts, first, -(-plan.stop // unit))
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

    def _check_counts(self, block: str, counts: np.ndarray, first: int, last: int) -> None:
        """The decoded node counts of units ``[first, last)`` must fit the values the unit offsets give each unit
        (all of them, or less in unit-aligned shards, whose units end in padding): else slices of the values
        would run past what was decoded."""
        unit = self.index.unit_jets
        jets = min(last * unit, self.index.n_jets) - first * unit
        expected = np.diff(self.index.unit_offsets[block][first:last + 1])
        if jets <= 0:
            return
        held = counts[:jets]
        if held.min() < 0 or (np.add.reduceat(held.astype(np.int64), np.arange(0, jets, unit)) > expected).any():
            raise self.damaged(f"the node counts of block '{block}' do not match its unit offsets")

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
        """The chunk index, every size in it checked against the manifest and the shard's bytes first."""
        sparse = self.metadata_file()
        entries = self._entries(sparse)
        documents = {i: name for i, name in entries.others.items() if name.endswith("zarr.json")}
        self._check_entries(entries, documents)
        try:
            metadata = {name.removesuffix("zarr.json").rstrip("/"): json.loads(self._document(sparse, entries, i))
                        for i, name in documents.items()}
        except (ValueError, RecursionError) as exc:
            raise self.damaged(f"unreadable metadata: {type(exc).__name__}") from None
        order = np.argsort(entries.key_ids, kind="stable")
        bounds = np.searchsorted(entries.key_ids[order], np.arange(len(entries.keys) + 1))
        chunk_entries = {key: order[bounds[k]:bounds[k + 1]] for k, key in enumerate(entries.keys)}
        try:
            root = metadata[""]["attributes"]
            n_jets, unit_jets = self._jets(root)
            aligned = root.get("value_layout") == UNIT_ALIGNED
            unit_offsets = {block.name: self._unit_offsets(root, block.name, n_jets, unit_jets, aligned)
                            for block in self.columns.blocks}
            arrays = {}
            for key, dtype in self._expected_arrays():
                if key in metadata:
                    block, _, name = key.partition("/")
                    size, chunk = ((n_jets, unit_jets) if block == JETS or name == COUNTS
                                   else (int(unit_offsets[block][-1]), None))
                    rows = chunk_entries.get(key, np.zeros(0, np.int64))
                    arrays[key] = self._array_index(key, metadata[key], dtype, size, chunk, entries, rows)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            raise self.damaged(f"malformed metadata ({type(exc).__name__}: {exc})") from None
        table, arrays = chunk_table(arrays)
        return ShardIndex(arrays, n_jets, unit_jets, unit_offsets, table)

    def _entries(self, sparse: SparseFile) -> directory.Entries:
        """The zip's entries from the shard's chunk index (one request after the tail: the index and the metadata
        documents after it), or, in shards without one, from its central directory (then one request for the
        documents before it, if the tail did not hold them): either way the documents are fetched with them."""
        tail_start, tail = sparse.pieces[0]
        try:
            count, offset, size = directory.locate(tail, tail_start, self.source.size)
            where = chunk_index.pointer(directory.comment(tail), offset)
            if where is not None:
                sparse.range(where.offset, offset)  # the index, then the documents
                return chunk_index.entries(sparse.range(where.offset, where.offset + where.size), where, count, offset)
            entries = directory.parse(sparse.range(offset, offset + size), count)
        except (directory.DirectoryError, chunk_index.ChunkIndexError) as exc:
            raise self.damaged(str(exc)) from None
        documents = [int(entries.offsets[i]) for i, name in entries.others.items() if name.endswith("zarr.json")]
        if documents and min(documents) < min(tail_start, offset):  # before the directory, fetched just now
            begin = min(documents)
            sparse.pieces.append((begin, sparse.fetch_missing(begin, min(tail_start, offset))))
        return entries

    def _check_entries(self, entries: directory.Entries, documents: dict[int, str]) -> None:
        """Every zip entry must be stored uncompressed, within the shard's bytes and at most its limit (a
        metadata document or a chunk)."""
        limits = np.full(len(entries), MAX_CHUNK_BYTES + BLOSC_OVERHEAD, np.int64)
        limits[list(documents)] = MAX_DOCUMENT_BYTES
        compressed = (entries.methods != 0) | (entries.file_sizes != entries.sizes)
        ends = entries.offsets + LOCAL_HEADER_SIZE + entries.name_lengths + entries.sizes
        oversized = (entries.sizes > limits) | (ends > self.source.size)
        bad = compressed | oversized
        if bad.any():
            i = int(np.argmax(bad))
            name = _shown(_entry_name(entries, i))
            if compressed[i]:
                raise self.damaged(f"zip entry {name} is compressed (jetstore stores entries as they are)")
            raise self.damaged(f"zip entry {name} claims {entries.sizes[i]} bytes, more than the shard holds or an "
                               "entry may take")

    def _document(self, sparse: SparseFile, entries: directory.Entries, i: int) -> bytes:
        """A metadata document's bytes, its local header and CRC checked."""
        start = int(entries.offsets[i])
        header = sparse.range(start, start + LOCAL_HEADER_SIZE)
        if len(header) < LOCAL_HEADER_SIZE or header[:4] != b"PK\x03\x04":
            raise self.damaged(f"unreadable metadata: bad zip entry header for {_shown(entries.others[i])}")
        name_length, extra = struct.unpack("<HH", header[26:30])
        begin = start + LOCAL_HEADER_SIZE + name_length + extra
        data = sparse.range(begin, begin + int(entries.sizes[i]))
        if len(data) != entries.sizes[i] or zlib.crc32(data) != int(entries.crcs[i]):
            raise self.damaged(f"unreadable metadata: {_shown(entries.others[i])} fails its CRC check")
        return data

    def _jets(self, root: dict) -> tuple[int, int]:
        n_jets, unit_jets = root["n_jets"], root["unit_jets"]
        if not _integer(n_jets) or n_jets != self.n_jets:
            raise self.damaged(f"it holds {echo(n_jets)} jets, the manifest says {self.n_jets}")
        expected = self.bounds.unit_jets
        if not _integer(unit_jets) or not 0 < unit_jets <= MAX_UNIT_JETS or (expected and unit_jets != expected):
            raise self.damaged(f"its unit_jets {echo(unit_jets)} is not the manifest's {expected or 'layout'}")
        return n_jets, unit_jets

    def _unit_offsets(self, root: dict, block: str, n_jets: int, unit_jets: int, aligned: bool) -> np.ndarray:
        """The block's value offsets at every unit boundary: one per unit and one more, from 0, never
        decreasing, ending at the manifest's node count (unit-aligned shards: plus at most a chunk of padding per
        unit)."""
        offsets = root["unit_offsets"][block]
        n_units = -(-n_jets // unit_jets)
        if not isinstance(offsets, list) or len(offsets) != n_units + 1 or not all(map(_integer, offsets)):
            raise self.damaged(f"unit_offsets of block '{block}' are not {n_units + 1} integers")
        values = np.asarray(offsets, np.int64)
        expected = (self.bounds.node_counts or {}).get(block)
        if values[0] != 0 or (np.diff(values) < 0).any():
            raise self.damaged(f"unit_offsets of block '{block}' are not increasing from 0")
        held = values[-1]
        if aligned:  # the values end in padding: the shard states its node count beside them
            held = root["node_counts"][block]
            padding = n_units * (self.bounds.chunk_values or MAX_CHUNK_BYTES)
            if not _integer(held) or not held <= values[-1] <= held + padding:
                raise self.damaged(f"unit_offsets of block '{block}' do not fit its {echo(held)} nodes")
        if expected is not None and held != expected:
            raise self.damaged(f"it holds {held} nodes of block '{block}', the manifest says {expected}")
        return values

    def _expected_arrays(self) -> list[tuple[str, np.dtype]]:
        """The arrays the manifest's columns say a shard holds, with their dtypes."""
        out = [(f"{JETS}/{name}", np.dtype(dtype)) for name, dtype in self.columns.jets]
        for block in self.columns.blocks:
            out.append((f"{block.name}/{COUNTS}", np.dtype("int32")))
            out += [(f"{block.name}/{name}", np.dtype(dtype)) for name, dtype in block.features]
        return out

    def _array_index(self, key: str, document: dict, dtype: np.dtype, size: int, chunk: int | None,
                     entries: directory.Entries, rows: np.ndarray) -> ArrayIndex:
        """One array's chunk index: its shape, chunk shape and dtype as the manifest implies, and a stored
        chunk for every chunk (as jetstore writes them) within the shard's bytes; ``rows``: its zip entries."""
        (shape,), (stored_chunk,) = document["shape"], document["chunk_grid"]["configuration"]["chunk_shape"]
        limit = self.bounds.chunk_values if chunk is None else chunk
        if document.get("node_type") != "array" or np.dtype(document["data_type"]) != dtype:
            raise self.damaged(f"array {key} is not {dtype} (its zarr.json says {echo(document.get('data_type'))})")
        if not _integer(shape) or shape != size:
            raise self.damaged(f"array {key} has shape {echo(shape)}; the shard holds {size}")
        if not _integer(stored_chunk) or stored_chunk <= 0 or (chunk is not None and stored_chunk != chunk) \
                or (limit is not None and stored_chunk > limit) or stored_chunk * dtype.itemsize > MAX_CHUNK_BYTES:
            raise self.damaged(f"array {key} has chunk shape {echo(stored_chunk)}, which the layout does not allow")
        n_chunks = -(-size // stored_chunk)
        if n_chunks > len(rows):
            raise self.damaged(f"array {key} claims {n_chunks} chunks; the zip holds {len(rows)}")
        numbers, stored = entries.numbers[rows], entries.sizes[rows]
        bad = (numbers >= n_chunks) | (stored > stored_chunk * dtype.itemsize + BLOSC_OVERHEAD)
        order = np.argsort(numbers, kind="stable")
        bad[order[1:]] |= numbers[order[1:]] == numbers[order[:-1]]  # a chunk stored twice
        if bad.any():
            i = int(np.argmax(bad))
            raise self.damaged(f"chunk {key}/c/{numbers[i]} does not fit the array ({stored[i]} bytes stored)")
        # as many entries as chunks, each below n_chunks and none twice: every chunk is there once
        offsets = np.empty(n_chunks, np.int64)
        data_offsets = np.empty(n_chunks, np.int64)
        sizes = np.empty(n_chunks, np.int64)
        crcs = np.empty(n_chunks, np.uint32)
        offsets[numbers] = entries.offsets[rows]
        data_offsets[numbers] = entries.offsets[rows] + LOCAL_HEADER_SIZE + entries.name_lengths[rows]
        sizes[numbers], crcs[numbers] = stored, entries.crcs[rows]
        return ArrayIndex(dtype, int(stored_chunk), int(size), offsets, data_offsets, sizes, crcs)


def _unit_values(index: ShardIndex, block: str, start: int) -> int:
    """The values (padding included) of the block in the unit starting at jet ``start``."""
    offsets, unit = index.unit_offsets[block], start // index.unit_jets
    return int(offsets[unit + 1] - offsets[unit])


def _entry_name(entries: directory.Entries, i: int) -> str:
    if i in entries.others:
        return entries.others[i]
    return f"{entries.keys[entries.key_ids[i]]}/c/{entries.numbers[i]}"


def _integer(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _shown(name: str) -> str:
    return echo(name) if len(name) <= 64 else f"<a name of {len(name)} characters>"
