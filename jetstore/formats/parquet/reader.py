"""Reading a Parquet shard by exact byte ranges: the footer is read once per process (cached), then the
column chunks of the needed row groups are fetched (one coalesced range per unit: a row group's column
chunks are contiguous) and decoded by pyarrow, which verifies every page's CRC."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from jetstore.errors import echo
from jetstore.formats.base import MAX_CHUNK_BYTES, MIN_GAP, MetadataCache, ReadPlan, ShardReader
from jetstore.formats.parquet.footer import FooterError, RowGroup, row_groups
from jetstore.io.ranges import SparseFile, coalesce
from jetstore.model.layout import Selection
from jetstore.model.table import BlockData, JetTable

CACHE = MetadataCache()


@dataclass(frozen=True)
class FooterIndex:
    metadata: pq.FileMetaData
    group_starts: np.ndarray  # first jet of every row group, and the total
    chunks: dict[tuple[int, str], tuple[int, int]]  # (row group, top-level column) → byte range
    decoded: dict[tuple[int, str], int]  # (row group, top-level column) → bytes it decodes to at most


class ParquetShardReader(ShardReader):
    def __init__(self, *args, cache_key: tuple[str, str] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.index: FooterIndex = CACHE.get(cache_key or (self.source.path, ""), self._load_index)

    def plan(self, start: int, stop: int, selection: Selection) -> ReadPlan:
        starts = self.index.group_starts
        groups = list(range(max(int(np.searchsorted(starts, start, side="right")) - 1, 0),
                            int(np.searchsorted(starts, stop, side="left")))) if stop > start else []
        names = self._column_names(selection)
        ranges = [self.index.chunks[g, name] for g in groups for name in names]
        needed = sum(b - a for a, b in ranges)
        self.check_expansion(start, stop, sum(self.index.decoded[g, name] for g in groups for name in names), needed)
        return ReadPlan(start, stop, selection, coalesce(ranges, max(MIN_GAP, needed // 2)).ranges,
                        tuple(groups))

    def decode(self, plan: ReadPlan, pieces: list[bytes]) -> JetTable:
        return self._jets(self._arrow([(plan, pieces)]), plan.selection)

    @classmethod
    def decode_window(cls, reads: Sequence[tuple[ShardReader, ReadPlan, list[bytes]]]) -> JetTable:
        """Plans of one dataset and selection: the row groups of each run of plans in one shard read by one
        pyarrow call, every column turned into numpy once for them all."""
        if not all(isinstance(r, ParquetShardReader) and p.selection == reads[0][1].selection for r, p, _ in reads):
            return super().decode_window(reads)
        runs = [list(run) for _, run in itertools.groupby(reads, key=lambda read: id(read[0]))]
        readers = [cast(ParquetShardReader, run[0][0]) for run in runs]
        tables = [reader._arrow([(plan, pieces) for _, plan, pieces in run])
                  for reader, run in zip(readers, runs, strict=True)]
        return readers[0]._jets(pa.concat_tables(tables) if len(tables) > 1 else tables[0], reads[0][1].selection)

    def _arrow(self, plans: list[tuple[ReadPlan, list[bytes]]]) -> pa.Table:
        """The jets of plans of this shard (one selection), plan after plan, as one Arrow table."""
        groups = [g for plan, _ in plans for g in plan.parts]
        names = self._column_names(plans[0][0].selection)
        fetched = {a: piece for plan, pieces in plans for (a, _), piece in zip(plan.fetch, pieces, strict=True)}
        sparse = SparseFile(self.source.size, fetched, lambda a, b: self.guard(lambda: self.source.fetch([(a, b)])[0]))
        try:
            parquet = pq.ParquetFile(sparse, metadata=self.index.metadata, pre_buffer=False,
                                     page_checksum_verification=True)
            # one thread: pyarrow's worker threads turn some errors in a hostile file into std::terminate
            arrow = (parquet.read_row_groups(groups, columns=names, use_threads=False) if groups
                     else parquet.schema_arrow.empty_table().select(names))
        except (OSError, pa.ArrowException) as exc:
            raise self.damaged(f"{type(exc).__name__}: {exc}") from None
        parts, position = [], 0
        for plan, _ in plans:
            begin = position + (plan.start - int(self.index.group_starts[plan.parts[0]]) if plan.parts else 0)
            part = arrow.slice(begin, plan.stop - plan.start)
            if part.num_rows != plan.stop - plan.start:
                raise self.damaged(f"its row groups hold {part.num_rows} of jets {plan.start}-{plan.stop}")
            parts.append(part)
            position += sum(int(np.diff(self.index.group_starts[g:g + 2])[0]) for g in plan.parts)
        return parts[0] if len(parts) == 1 else pa.concat_tables(parts)

    def _jets(self, arrow: pa.Table, selection: Selection) -> JetTable:
        """An Arrow table's selected columns as numpy."""
        jets = {name: arrow.column(name).to_numpy() for name in selection.jets}
        blocks = {}
        for block, features in selection.blocks.items():
            lists = {name: arrow.column(name).combine_chunks()
                     for name in features or self.columns.block(block).names[:1]}
            first = next(iter(lists.values())) if lists else None
            counts = first.value_lengths().to_numpy().astype(np.int32) if first is not None else np.zeros(0, np.int32)
            if any(not np.array_equal(a.value_lengths().to_numpy(), counts) for a in lists.values()):
                raise self.damaged(f"the features of block '{block}' have different numbers of nodes per jet")
            blocks[block] = BlockData(counts, {name: lists[name].flatten().to_numpy() for name in features})
        return JetTable(jets, blocks)

    def _column_names(self, selection: Selection) -> list[str]:
        """Columns to read: the jet columns and each block's features (one, for a block's counts alone)."""
        names = list(selection.jets)
        for block, features in selection.blocks.items():
            names += list(features) or [self.columns.block(block).names[0]]
        return names

    def _load_index(self) -> FooterIndex:
        return self.guard(self._parse_footer)

    def _parse_footer(self) -> FooterIndex:
        """The footer, with its schema, row counts and every column chunk's byte range and sizes checked
        against the manifest and the shard's bytes before any page is read."""
        try:
            return self._checked_footer()
        except (UnicodeDecodeError, KeyError, IndexError, OverflowError) as exc:  # a hostile footer's names, numbers
            raise self.damaged(f"malformed Parquet footer ({type(exc).__name__})") from None

    def _checked_footer(self) -> FooterIndex:
        sparse = self.metadata_file()
        try:
            metadata = pq.read_metadata(sparse)
            schema = metadata.schema.to_arrow_schema()
        except (OSError, pa.ArrowException, ValueError) as exc:
            raise self.damaged(f"unreadable Parquet footer ({type(exc).__name__}: {str(exc)[:120]})") from None
        if metadata.num_rows != self.n_jets:
            raise self.damaged(f"it holds {metadata.num_rows} jets, the manifest says {self.n_jets}")
        expected = self._arrow_types()
        found = {field.name: field.type for field in schema}
        if found != expected:
            name = next(n for n in [*expected, *found] if found.get(n) != expected.get(n))
            raise self.damaged(f"column {echo(name)} is {found.get(name)}, the manifest says {expected.get(name)}")
        groups = self._row_groups(sparse)
        rows = [group.rows for group in groups]
        if len(groups) != metadata.num_row_groups or any(r < 0 for r in rows) or sum(rows) != self.n_jets:
            raise self.damaged("its row groups do not add up to its jets")
        chunks, decoded = {}, {}
        for g, group in enumerate(groups):
            for column in group.columns:
                end = column.begin + column.compressed
                if column.begin < 0 or column.compressed < 0 or end > self.source.size \
                        or column.uncompressed > self._decoded_bound(column.name, rows[g]) \
                        or not 0 <= column.values <= self._values_bound(column.name, rows[g]):
                    raise self.damaged(f"column chunk {echo(column.name)} of row group {g} claims sizes the shard "
                                       "cannot hold")
                chunks[g, column.name] = (column.begin, end)
                decoded[g, column.name] = _decoded_size(expected[column.name], column.values, rows[g])
            missing = [name for name in expected if (g, name) not in chunks]
            if missing:
                raise self.damaged(f"row group {g} has no column {echo(missing[0])}")
        return FooterIndex(metadata, np.concatenate([[0], np.cumsum(rows)]).astype(np.int64), chunks, decoded)

    def _row_groups(self, sparse) -> list[RowGroup]:
        """Row counts and column chunk ranges from the footer's bytes (see ``footer.py``: never through
        pyarrow's metadata objects, which abort the process on some hostile footers)."""
        size = self.source.size
        sparse.seek(size - 8)
        tail = sparse.read(8)
        length = int.from_bytes(tail[:4], "little")
        if tail[4:] != b"PAR1" or length + 8 > size:
            raise self.damaged("no Parquet footer")
        sparse.seek(size - 8 - length)
        try:
            return row_groups(sparse.read(length))
        except FooterError as exc:
            raise self.damaged(f"malformed Parquet footer ({exc})") from None

    def _arrow_types(self) -> dict[str, pa.DataType]:
        """The Arrow type of every stored column, as the manifest's columns say."""
        types = {name: pa.from_numpy_dtype(np.dtype(dtype)) for name, dtype in self.columns.jets}
        for block in self.columns.blocks:
            for name, dtype in block.features:
                types[name] = pa.list_(pa.field("element", pa.from_numpy_dtype(np.dtype(dtype)), nullable=False))
        return types

    def _values_bound(self, name: str, rows: int) -> int:
        """The most values a column chunk of ``rows`` jets may store: one per jet, or a block's nodes (the
        manifest's node count of the shard) plus one level entry per jet."""
        for block in self.columns.blocks:
            if name in block.names:
                return (self.bounds.node_counts or {}).get(block.name, MAX_CHUNK_BYTES) + rows
        return rows

    def _decoded_bound(self, name: str, rows: int) -> int:
        """The most a column chunk of ``rows`` jets may decode to: its values (a block's nodes at most the
        manifest's node count) at 8 bytes, with room for levels and page headers."""
        nodes = 0
        for block in self.columns.blocks:
            if name in block.names:
                nodes = (self.bounds.node_counts or {}).get(block.name, MAX_CHUNK_BYTES // 8)
        return min(MAX_CHUNK_BYTES, 4 * 8 * (rows + nodes) + (1 << 20))


def _decoded_size(kind: pa.DataType, values: int, rows: int) -> int:
    """Bytes a column chunk of ``rows`` jets and ``values`` stored values decodes to (a list column: its values
    and its offsets), before pyarrow allocates them."""
    if pa.types.is_list(kind):
        return values * max(1, kind.value_type.bit_width // 8) + 8 * (rows + 1)
    return rows * max(1, kind.bit_width // 8)
