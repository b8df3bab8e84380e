"""Which zip entries (chunks) of a Zarr shard hold a read's jets, and where each decodes to.

A plan lists, array by array, the chunks holding jets ``[start, stop)`` with each chunk's local header, stored
size, CRC and place in the decoded output, and the byte ranges to fetch (nearby chunks merged). The shard's
chunks sit in one table (:func:`chunk_table`), and a window's plans of one shard (the sampler's reads of whole
units) are made in one kernel call (:func:`unit_chunks`): ~20 µs a unit of 32 arrays in windows of 10 units,
~40 µs for a window's one unit of a shard (as on datasets of many shards), against 140-210 µs when made in array
operations; a plan made alone (:meth:`~jetstore.formats.zarr.reader.ZarrShardReader.plan`) takes ~100 µs
(``bench/sampler_ab.py TREE plans``, ``bench/sampler.py --sections plans``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

import numba
import numpy as np

from jetstore.formats.zarr.chunks import LOCAL_HEADER_SIZE
from jetstore.formats.zarr.layout import COUNTS, JETS
from jetstore.model.layout import Selection

CHUNK_COLUMNS = ("header", "end", "name", "size", "crc", "out", "out_size", "span", "rank")
"""What a plan knows of each chunk: local header, end of its stored bytes, name length, stored size, CRC-32
(unsigned), output place and size, array (its row in the plan's spans) and place among that array's chunks."""


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
    base: int = 0             # its first chunk's row in the shard's chunk table (:func:`chunk_table`)

    @property
    def width(self) -> int:
        """Decoded bytes of one chunk."""
        return self.chunk * self.dtype.itemsize


@dataclass(frozen=True)
class ZipParts:
    """What a plan's fetched bytes hold: per array (``keys``) its first and end chunk and its byte offset in the
    decoded output (``spans``, one row per array), and per chunk its header, sizes, CRC, output place and array
    (``span``: its row in ``spans``; ``rank``: its place among the array's chunks of the plan). ``packable``: the
    plan is one unit whose every array starts at a chunk boundary, so plans of many units decode side by side (see
    :meth:`~jetstore.formats.zarr.reader.ZarrShardReader.decode_window`)."""

    keys: tuple[str, ...]
    spans: np.ndarray  # [array, (first chunk, end chunk, output offset)]
    bytes: int
    chunks: dict[str, np.ndarray]
    where: np.ndarray  # per chunk: (fetched piece, offset of its header there)
    packable: bool = False

    @property
    def layout(self) -> list[tuple[str, int, int, int]]:
        """Per array: (key, first chunk, end chunk, output offset)."""
        return [(key, *row) for key, row in zip(self.keys, self.spans.tolist(), strict=True)]


@dataclass(frozen=True)
class UnitChunks:
    """The chunks of several units' plans, unit after unit (unit k's at ``bounds[k]:bounds[k + 1]``), their
    fetch ranges (unit k's at ``range_bounds[k]:range_bounds[k + 1]``) and per-unit sizes."""

    spans: np.ndarray         # [unit, array, (first chunk, end chunk, output offset)]
    chunks: dict[str, np.ndarray]
    bounds: np.ndarray
    where: np.ndarray         # per chunk: (range of its unit, offset of its header there)
    ranges: np.ndarray        # [range, (start, end)]
    range_bounds: np.ndarray
    decoded: np.ndarray       # per unit: bytes decoded
    needed: np.ndarray        # per unit: bytes of its chunks


def chunk_table(arrays: Mapping[str, ArrayIndex]) -> tuple[np.ndarray, dict[str, ArrayIndex]]:
    """Every array's chunks in one table ([chunk, (header, stored bytes' offset, stored size, CRC)], array after
    array), and the arrays over views of it, each knowing its first row: plans of many arrays gather their chunks
    from it at once."""
    table = np.concatenate([np.stack([a.offsets, a.data_offsets, a.sizes, a.crcs.astype(np.int64)], axis=1)
                            for a in arrays.values()]) if arrays else np.zeros((0, 4), np.int64)
    views, base = {}, 0
    for key, a in arrays.items():
        rows = table[base:base + len(a.offsets)]
        views[key] = replace(a, offsets=rows[:, 0], data_offsets=rows[:, 1], sizes=rows[:, 2], crcs=rows[:, 3],
                             base=base)
        base += len(a.offsets)
    return table, views


@dataclass(frozen=True)
class SpanRule:
    """Which chunks of a selection's arrays hold given units: jet arrays and node counts hold one chunk per unit
    (``block`` -1); a node block's arrays hold the values from the unit's offset to the next one's (``block``: the
    row of that block's unit offsets in ``offsets``; ``chunks``: the array's chunk length). Per array, following
    ``keys``."""

    keys: tuple[str, ...]
    block: np.ndarray
    chunks: np.ndarray
    offsets: np.ndarray  # [block, unit boundary]: each block's value offset at every unit boundary
    widths: np.ndarray   # decoded bytes of one chunk
    bases: np.ndarray    # first row in the chunk table
    lengths: np.ndarray  # chunks

    @classmethod
    def of(cls, arrays: Mapping[str, ArrayIndex], unit_offsets: Mapping[str, np.ndarray], selection: Selection
           ) -> SpanRule:
        """The rule of reading ``selection``: its jet columns, then per block the node counts and the features."""
        keys = [f"{JETS}/{name}" for name in selection.jets]
        block = [-1] * len(keys)
        for row, (name, features) in enumerate(selection.blocks.items()):
            keys.extend([f"{name}/{COUNTS}", *(f"{name}/{feature}" for feature in features)])
            block.extend([-1, *[row] * len(features)])
        chosen = [arrays[key] for key in keys]
        units = len(next(iter(unit_offsets.values()), [0]))
        offsets = np.array([unit_offsets[name] for name in selection.blocks], np.int64).reshape(-1, units)
        return cls(tuple(keys), np.array(block, np.int64), np.array([a.chunk for a in chosen], np.int64), offsets,
                   np.array([a.width for a in chosen], np.int64), np.array([a.base for a in chosen], np.int64),
                   np.array([len(a.offsets) for a in chosen], np.int64))

    def spans(self, first: np.ndarray, last: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """[plan, array] first and end chunk of plans of units ``first`` to ``last`` (excluded)."""
        return _spans(self.block, self.chunks, self.offsets, np.asarray(first, np.int64), np.asarray(last, np.int64))

    def aligned(self, first: np.ndarray) -> bool:
        """Do the node values of units ``first`` start at a chunk boundary in every array?"""
        return _aligned(self.block, self.chunks, self.offsets, np.asarray(first, np.int64))


@numba.njit(cache=True, nogil=True)
def _spans(block, chunks, offsets, first, last):  # pragma: no cover
    begins = np.empty((len(first), len(block)), np.int64)
    ends = np.empty_like(begins)
    for p in range(len(first)):
        for a in range(len(block)):
            if block[a] < 0:
                begins[p, a], ends[p, a] = first[p], last[p]
            else:
                begins[p, a] = offsets[block[a], first[p]] // chunks[a]
                ends[p, a] = -(-offsets[block[a], last[p]] // chunks[a])
    return begins, ends


@numba.njit(cache=True, nogil=True)
def _aligned(block, chunks, offsets, first):  # pragma: no cover
    for p in range(len(first)):
        for a in range(len(block)):
            if block[a] >= 0 and offsets[block[a], first[p]] % chunks[a]:
                return False
    return True


def unit_chunks(table: np.ndarray, rule: SpanRule, begins: np.ndarray, ends: np.ndarray,
                max_gap: int) -> UnitChunks:
    """The chunks of many plans at once (``begins`` and ``ends``: [unit, array] chunk numbers), and each plan's
    fetch ranges: its chunks' byte ranges merged where the gap is at most ``max(max_gap, needed // 2)``, as
    :func:`~jetstore.io.ranges.coalesce` merges one plan's. One kernel call: a window's reads of a dataset of
    many shards plan ~1 unit per shard per call, where array operations cost ~90 µs a call whatever its size."""
    columns, spans, bounds, decoded, needed, where, ranges, range_bounds = _plan(
        table, rule.bases, rule.widths, rule.lengths, np.ascontiguousarray(begins, np.int64),
        np.ascontiguousarray(ends, np.int64), max_gap)
    chunks = dict(zip(CHUNK_COLUMNS, columns, strict=True))
    chunks["crc"] = chunks["crc"].view(np.uint64)
    return UnitChunks(spans, chunks, bounds, where, ranges, range_bounds, decoded, needed)


@numba.njit(cache=True, nogil=True)
def _plan(table, bases, widths, lengths, begins, ends, max_gap):  # pragma: no cover
    """Per chunk of every [unit, array] span, unit-major, its :data:`CHUNK_COLUMNS` (one row each); the spans
    with their output offsets (8-byte aligned regions, array after array); each unit's first chunk, decoded
    bytes and stored bytes; each chunk's (range, offset there) and each unit's merged ranges."""
    n_units, n_arrays = begins.shape
    total = 0
    for u in range(n_units):
        for a in range(n_arrays):
            if not 0 <= begins[u, a] <= ends[u, a] <= lengths[a]:
                raise ValueError("a plan's chunks reach past its array's")  # never for a checked index
            total += ends[u, a] - begins[u, a]
    columns = np.empty((len(CHUNK_COLUMNS), total), np.int64)
    header, end, name, size, crc, out, out_size, span, rank = columns
    spans = np.empty((n_units, n_arrays, 3), np.int64)
    bounds, decoded, needed = np.empty(n_units + 1, np.int64), np.empty(n_units, np.int64), np.zeros(n_units, np.int64)
    k = 0
    for u in range(n_units):
        bounds[u] = k
        offset = 0
        for a in range(n_arrays):
            count, width = ends[u, a] - begins[u, a], widths[a]
            spans[u, a, 0], spans[u, a, 1], spans[u, a, 2] = begins[u, a], ends[u, a], offset
            for r in range(count):
                row = bases[a] + begins[u, a] + r
                header[k], size[k] = table[row, 0], table[row, 2]
                end[k] = table[row, 1] + table[row, 2]
                name[k] = table[row, 1] - table[row, 0] - LOCAL_HEADER_SIZE
                crc[k] = table[row, 3]
                out[k], out_size[k], span[k], rank[k] = offset + r * width, width, a, r
                needed[u] += end[k] - header[k]
                k += 1
            offset += -(-count * width // 8) * 8
        decoded[u] = offset
    bounds[n_units] = k
    where = np.empty((total, 2), np.int64)
    ranges = np.empty((total, 2), np.int64)
    range_bounds = np.empty(n_units + 1, np.int64)
    n = 0
    for u in range(n_units):
        range_bounds[u] = n
        gap = max(max_gap, needed[u] // 2)
        for i in np.argsort(header[bounds[u]:bounds[u + 1]], kind="mergesort") + bounds[u]:
            if n == range_bounds[u] or header[i] - ranges[n - 1, 1] > gap:
                ranges[n, 0], ranges[n, 1] = header[i], end[i]
                n += 1
            else:
                ranges[n - 1, 1] = max(ranges[n - 1, 1], end[i])
            where[i, 0], where[i, 1] = n - 1 - range_bounds[u], header[i] - ranges[n - 1, 0]
    range_bounds[n_units] = n
    return columns, spans, bounds, decoded, needed, where, ranges[:n], range_bounds
