"""Writing a Parquet shard: one file, node features as list columns, zstd (or lz4), row groups of exactly
``layout.chunk_jets`` jets (a unit, the sampler's read granularity; the last row group shorter).

Columns are required (non-nullable, elements too), jet-level columns carry min/max statistics (so
``pyarrow.dataset`` filters skip row groups), and every page carries a CRC that readers verify.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from jetstore.formats.base import ShardWriter
from jetstore.model.table import JetTable


class ParquetShardWriter(ShardWriter):
    """Buffers incoming jets and writes whole row groups as soon as they are complete."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._pending: list[JetTable] = []
        self._pending_jets = 0
        self._writer = pq.ParquetWriter(
            self.path, self.arrow_schema(), compression=self.layout.codec,
            compression_level=self.layout.compression_level, use_dictionary=False,
            write_statistics=list(self.columns.jet_names),
            write_page_checksum=True,  # readers verify every page: a flipped bit is an error, not a value
        )

    def arrow_schema(self) -> pa.Schema:
        fields = [pa.field(name, pa.from_numpy_dtype(np.dtype(dtype)), nullable=False)
                  for name, dtype in self.columns.jets]
        for block in self.columns.blocks:
            for name, dtype in block.features:
                element = pa.field("element", pa.from_numpy_dtype(np.dtype(dtype)), nullable=False)
                fields.append(pa.field(name, pa.list_(element), nullable=False))
        return pa.schema(fields)

    def write(self, table: JetTable) -> None:
        if table.n_jets == 0:
            return
        self._pending.append(table)
        self._pending_jets += table.n_jets
        if self._pending_jets >= self.layout.chunk_jets:
            self._flush(final=False)

    def close(self) -> None:
        self._flush(final=True)
        self._writer.close()

    def _flush(self, final: bool) -> None:
        if not self._pending:
            return
        merged = JetTable.concat(self._pending)
        size = self.layout.chunk_jets
        cut = merged.n_jets if final else merged.n_jets - merged.n_jets % size
        if cut:
            self._writer.write_table(self._arrow_table(merged.slice(0, cut)), row_group_size=size)
        rest = merged.slice(cut, merged.n_jets)
        self._pending = [rest] if rest.n_jets else []
        self._pending_jets = rest.n_jets

    def _arrow_table(self, table: JetTable) -> pa.Table:
        schema = self.arrow_schema()
        columns: list[pa.Array] = [pa.array(table.jets[name], type=schema.field(name).type)
                                   for name, _ in self.columns.jets]
        for block in self.columns.blocks:
            data = table.blocks[block.name]
            offsets = pa.array(data.offsets.astype(np.int32))
            for name, _ in block.features:
                columns.append(pa.ListArray.from_arrays(offsets, pa.array(data.features[name]),
                                                        type=schema.field(name).type))
        return pa.Table.from_arrays(columns, schema=schema)
