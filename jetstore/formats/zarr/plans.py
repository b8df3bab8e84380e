"""Which zip entries (chunks) of a Zarr shard hold a read's jets, and where each decodes to.

A plan lists, array by array, the chunks holding jets ``[start, stop)`` with each chunk's local header, stored
size, CRC and place in the decoded output, and the byte ranges to fetch (nearby chunks merged). The shard's
chunks sit in one table (:func:`chunk_table`), so a plan gathers them in one step, and the sampler's plans of
many whole units of one shard are made in a few array operations over all of them (:func:`unit_chunks`: ~60 µs
a unit of 32 arrays against ~400 µs one plan at a time, 1.6 µs per jet of 256-jet units, which were kept for the
next epoch only up to 1,024 plans per shard and 256 shards: never for datasets of users' size;
``bench/sampler.py --sections plans``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np

from jetstore.formats.zarr.chunks import LOCAL_HEADER_SIZE
from jetstore.formats.zarr.layout import COUNTS, JETS
from jetstore.model.layout import Selection

FILE_BITS = 42  # offsets within a shard stay below 4 TiB: a unit's number above them keeps its chunks apart


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
    (``per_unit``: their columns); a node block's arrays hold the values from the unit's offset to the next one's
    (``blocks``: its unit offsets, its arrays' columns and chunk lengths). Columns follow ``keys``."""

    keys: tuple[str, ...]
    per_unit: np.ndarray
    blocks: tuple[tuple[np.ndarray, np.ndarray, np.ndarray], ...]
    widths: np.ndarray  # decoded bytes of one chunk, per array
    bases: np.ndarray   # first row of each array in the chunk table

    @classmethod
    def of(cls, arrays: Mapping[str, ArrayIndex], unit_offsets: Mapping[str, np.ndarray], selection: Selection
           ) -> SpanRule:
        """The rule of reading ``selection``: its jet columns, then per block the node counts and the features."""
        keys = [f"{JETS}/{name}" for name in selection.jets]
        per_unit = list(range(len(keys)))
        spans = []
        for block, features in selection.blocks.items():
            per_unit.append(len(keys))
            keys.append(f"{block}/{COUNTS}")
            columns = np.arange(len(keys), len(keys) + len(features))
            keys.extend(f"{block}/{name}" for name in features)
            chunks = np.array([arrays[f"{block}/{name}"].chunk for name in features], np.int64)
            spans.append((unit_offsets[block], columns, chunks))
        chosen = [arrays[key] for key in keys]
        return cls(tuple(keys), np.array(per_unit, np.int64), tuple(spans),
                   np.array([a.width for a in chosen], np.int64), np.array([a.base for a in chosen], np.int64))

    def spans(self, first: np.ndarray, last: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """[plan, array] first and end chunk of plans of units ``first`` to ``last`` (excluded)."""
        begins = np.empty((len(first), len(self.keys)), np.int64)
        ends = np.empty_like(begins)
        begins[:, self.per_unit], ends[:, self.per_unit] = first[:, None], last[:, None]
        for offsets, columns, chunks in self.blocks:
            begins[:, columns] = offsets[first][:, None] // chunks
            ends[:, columns] = -(-offsets[last][:, None] // chunks)
        return begins, ends

    def aligned(self, first: np.ndarray) -> bool:
        """Do the node values of units ``first`` start at a chunk boundary in every array?"""
        return all(not (offsets[first][:, None] % chunks).any() for offsets, _, chunks in self.blocks)


def plan_chunks(table: np.ndarray, rule: SpanRule, begins: np.ndarray, ends: np.ndarray
                ) -> tuple[dict[str, np.ndarray], np.ndarray, int]:
    """The chunks of one plan (``begins`` and ``ends``: its row of :meth:`SpanRule.spans`), placed array after
    array in 8-byte aligned regions of the output: the chunks, the spans with their output offsets, and the
    bytes decoded."""
    chunks, placed, _, decoded = _columns(table, rule, begins, ends)
    return chunks, placed[0], int(decoded[0])


def unit_chunks(table: np.ndarray, rule: SpanRule, begins: np.ndarray, ends: np.ndarray,
                max_gap: int) -> UnitChunks:
    """The chunks of many plans at once (``begins`` and ``ends``: [unit, array] chunk numbers), and each plan's
    fetch ranges: its chunks' byte ranges merged where the gap is at most ``max(max_gap, needed // 2)``, as
    :func:`~jetstore.io.ranges.coalesce` merges one plan's."""
    chunks, spans, bounds, decoded = _columns(table, rule, begins, ends)
    n_units = len(begins)
    unit = np.repeat(np.arange(n_units), np.diff(bounds))
    needed = np.bincount(unit, weights=chunks["end"] - chunks["header"], minlength=n_units).astype(np.int64)
    gap = np.maximum(max_gap, needed // 2)
    order = np.lexsort((chunks["header"], unit))  # unit by unit, by offset
    start, end, owner = chunks["header"][order], chunks["end"][order], unit[order]
    reach = np.maximum.accumulate(end + (owner << FILE_BITS)) - (owner << FILE_BITS)  # furthest end so far
    new = np.ones(len(order), bool)
    new[1:] = (owner[1:] != owner[:-1]) | (start[1:] - reach[:-1] > gap[owner[1:]])
    heads = np.flatnonzero(new)
    ranges = np.stack([start[heads], np.maximum.reduceat(end, heads) if len(heads) else end[:0]], axis=1)
    range_of = np.cumsum(new) - 1
    range_bounds = np.searchsorted(owner[heads], np.arange(n_units + 1))
    where = np.empty((len(order), 2), np.int64)
    where[order, 0] = range_of - range_bounds[owner]
    where[order, 1] = start - ranges[range_of, 0]
    return UnitChunks(spans, chunks, bounds, where, ranges, range_bounds, decoded, needed)


def _columns(table: np.ndarray, rule: SpanRule, begins: np.ndarray, ends: np.ndarray
             ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
    """Per chunk of every [unit, array] span, unit-major: its local header, end, name length, stored size, CRC,
    output place and size, array (``span``) and place among the array's chunks of its plan (``rank``); the spans
    with their output offsets (8-byte aligned regions, array after array); each unit's first chunk; each unit's
    decoded bytes."""
    n_arrays = begins.shape[1]
    counts = ends - begins
    widths = rule.widths
    regions = -(-counts * widths // 8) * 8
    offsets = np.cumsum(regions, axis=1) - regions
    spans = np.stack([begins, ends, offsets], axis=2)
    flat = counts.ravel()
    pair = np.repeat(np.arange(flat.size), flat)
    rank = np.arange(len(pair)) - (np.cumsum(flat) - flat)[pair]
    span = pair % max(n_arrays, 1)
    number = begins.ravel()[pair] + rank
    rows = table[rule.bases[span] + number]
    header, data, size, crc = rows.T
    chunks = {"header": header, "end": data + size, "name": data - header - LOCAL_HEADER_SIZE, "size": size,
              "crc": crc.astype(np.uint64), "out": offsets.ravel()[pair] + rank * widths[span],
              "out_size": widths[span], "span": span, "rank": rank}
    bounds = np.concatenate([[0], np.cumsum(counts.sum(axis=1))]).astype(np.int64)
    return chunks, spans, bounds, regions.sum(axis=1)
