"""Reading a Parquet shard by exact byte ranges: the footer is read once per process (cached), then the
column chunks of the needed row groups are fetched (one coalesced range per unit: a row group's column
chunks are contiguous) and decoded by pyarrow, which verifies every page's CRC."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from jetstore.store.format.base import MIN_GAP, TAIL_BYTES, MetadataCache, ReadPlan, ShardReader
from jetstore.store.layout import Selection
from jetstore.store.ranges import SparseFile, coalesce
from jetstore.store.table import BlockData, JetTable

CACHE = MetadataCache()


@dataclass(frozen=True)
class FooterIndex:
    metadata: pq.FileMetaData
    group_starts: np.ndarray  # first jet of every row group, and the total
    chunks: dict[tuple[int, str], tuple[int, int]]  # (row group, top-level column) → byte range


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
        return ReadPlan(start, stop, selection, coalesce(ranges, max(MIN_GAP, needed // 2)), tuple(groups))

    def decode(self, plan: ReadPlan, pieces: list[bytes]) -> JetTable:
        groups, selection = list(plan.parts), plan.selection
        names = self._column_names(selection)
        sparse = SparseFile(self.source.size, dict(zip((a for a, _ in plan.fetch.ranges), pieces, strict=True)),
                            lambda a, b: self.guard(lambda: self.source.fetch([(a, b)])[0]))
        try:
            parquet = pq.ParquetFile(sparse, metadata=self.index.metadata, pre_buffer=False,
                                     page_checksum_verification=True)
            arrow = (parquet.read_row_groups(groups, columns=names) if groups
                     else parquet.schema_arrow.empty_table().select(names))
        except (OSError, pa.ArrowException) as exc:
            raise self.damaged(f"{type(exc).__name__}: {exc}") from None
        base = int(self.index.group_starts[groups[0]]) if groups else 0
        arrow = arrow.slice(plan.start - base, plan.stop - plan.start)
        jets = {name: arrow.column(name).to_numpy() for name in selection.jets}
        blocks = {}
        for block, features in selection.blocks.items():
            lists = {name: arrow.column(name).combine_chunks()
                     for name in features or self.columns.block(block).names[:1]}
            first = next(iter(lists.values())) if lists else None
            counts = first.value_lengths().to_numpy().astype(np.int32) if first is not None else np.zeros(0, np.int32)
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
        source = self.source
        start, tail = source.tail(TAIL_BYTES)
        sparse = SparseFile(source.size, {start: tail}, lambda a, b: source.fetch([(a, b)])[0])
        try:
            metadata = pq.read_metadata(sparse)
        except (OSError, pa.ArrowException) as exc:
            raise self.damaged(f"unreadable Parquet footer ({exc})") from None
        if metadata.num_rows != self.n_jets:
            raise self.damaged(f"it holds {metadata.num_rows} jets, the manifest says {self.n_jets}")
        rows = [metadata.row_group(g).num_rows for g in range(metadata.num_row_groups)]
        chunks = {}
        for g in range(metadata.num_row_groups):
            group = metadata.row_group(g)
            for c in range(group.num_columns):
                column = group.column(c)
                begin = column.dictionary_page_offset if column.has_dictionary_page else column.data_page_offset
                chunks[g, column.path_in_schema.split(".")[0]] = (begin, begin + column.total_compressed_size)
        return FooterIndex(metadata, np.concatenate([[0], np.cumsum(rows)]).astype(np.int64), chunks)
