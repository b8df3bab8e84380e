"""Parquet shards: one file per shard, node features as list columns, zstd (or lz4), fixed-size row groups."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from jetstore.store.format.base import ShardReader, ShardWriter
from jetstore.store.table import BlockData, JetTable


class ParquetShardWriter(ShardWriter):
    """Buffers incoming jets and writes row groups of exactly ``layout.chunk_jets`` jets (the last shorter)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._pending: list[JetTable] = []
        self._pending_jets = 0
        self._writer: pq.ParquetWriter | None = None

    def write(self, table: JetTable) -> None:
        if table.n_jets == 0:
            return
        self._pending.append(table)
        self._pending_jets += table.n_jets
        if self._pending_jets >= self.layout.chunk_jets:
            self._flush(final=False)

    def close(self) -> None:
        self._flush(final=True)
        if self._writer is None:  # an empty shard still gets a valid file with the schema
            self._open(self._arrow_table(None).schema)
        self._writer.close()

    def _flush(self, final: bool) -> None:
        if not self._pending:
            return
        merged = JetTable.concat(self._pending)
        size = self.layout.chunk_jets
        cut = merged.n_jets if final else merged.n_jets - merged.n_jets % size
        arrow = self._arrow_table(merged.slice(0, cut))
        if self._writer is None:
            self._open(arrow.schema)
        self._writer.write_table(arrow, row_group_size=size)
        rest = merged.slice(cut, merged.n_jets)
        self._pending = [rest] if rest.n_jets else []
        self._pending_jets = rest.n_jets

    def _open(self, arrow_schema: pa.Schema) -> None:
        floats = [f.name for f in arrow_schema if _is_float(f.type)]
        self._writer = pq.ParquetWriter(
            self.path, arrow_schema, compression=self.layout.codec, compression_level=self.layout.compression_level,
            use_dictionary=False, use_byte_stream_split=floats, write_statistics=False,
            write_page_checksum=True,  # readers verify every page: a flipped bit is an error, not a value
        )

    def _arrow_table(self, table: JetTable | None) -> pa.Table:
        columns: dict[str, pa.Array] = {}
        for column in self.schema.jet_columns:
            dtype = np.dtype(self.dtypes[column.name])
            data = table.jets[column.name] if table else np.zeros(0, dtype)
            columns[column.name] = pa.array(data, type=pa.from_numpy_dtype(dtype))
        for block in self.schema.blocks:
            counts = table.blocks[block.name].counts if table else np.zeros(0, np.int32)
            offsets = np.zeros(len(counts) + 1, dtype=np.int32)
            np.cumsum(counts, out=offsets[1:])
            offsets_array = pa.array(offsets)
            for feature in block.features:
                dtype = np.dtype(self.dtypes[feature.name])
                values = table.blocks[block.name].features[feature.name] if table else np.zeros(0, dtype)
                columns[feature.name] = pa.ListArray.from_arrays(
                    offsets_array, pa.array(values, type=pa.from_numpy_dtype(dtype))
                )
        return pa.table(columns)


class ParquetShardReader(ShardReader):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._parquet: pq.ParquetFile | None = None
        self._group_starts: np.ndarray | None = None

    def read(self, jet_columns: Iterable[str] | None = None, features: Mapping[str, Iterable[str]] | None = None,
             start: int = 0, stop: int | None = None) -> JetTable:
        jet_names, features = self._selection(jet_columns, features)
        # a block read with no features still needs one list column for its counts
        wanted = {b: names or [self.schema.block(b).features[0].name] for b, names in features.items()}
        columns = jet_names + [f for names in wanted.values() for f in names]
        parquet, starts = self._file_and_groups()
        end = int(starts[-1]) if stop is None else min(stop, int(starts[-1]))
        first = int(np.searchsorted(starts, start, side="right")) - 1
        last = int(np.searchsorted(starts, max(end, start + 1), side="left"))
        groups = list(range(max(first, 0), min(last, parquet.num_row_groups)))
        arrow = parquet.read_row_groups(groups, columns=columns) if groups else parquet.schema_arrow.empty_table()
        base = int(starts[groups[0]]) if groups else 0
        arrow = arrow.slice(start - base, max(end - start, 0))
        jets = {name: arrow.column(name).to_numpy() for name in jet_names}
        out_blocks = {}
        for block, names in wanted.items():
            lists = [arrow.column(name).combine_chunks() for name in names]
            counts = lists[0].value_lengths().to_numpy(zero_copy_only=False).astype(np.int32)
            values = {name: array.flatten().to_numpy() for name, array in zip(names, lists, strict=True)
                      if name in features[block]}
            out_blocks[block] = BlockData(counts, values)
        return JetTable(jets, out_blocks)

    def close(self) -> None:
        self._parquet = None
        super().close()

    def _file_and_groups(self) -> tuple[pq.ParquetFile, np.ndarray]:
        if self._parquet is None:
            self._parquet = pq.ParquetFile(self._open(), page_checksum_verification=True)
            rows = [self._parquet.metadata.row_group(i).num_rows for i in range(self._parquet.num_row_groups)]
            self._group_starts = np.concatenate([[0], np.cumsum(rows)]).astype(np.int64)
        return self._parquet, self._group_starts


def _is_float(arrow_type: pa.DataType) -> bool:
    if pa.types.is_list(arrow_type):
        arrow_type = arrow_type.value_type
    return pa.types.is_floating(arrow_type)
