"""Zarr v3 shards: one group per shard; jet columns as 1-D arrays, each node feature as a flat ``values``
array beside the block's per-jet ``counts``; Blosc(zstd, bit-shuffle) so reading is decompress + copy.

Layout of ``<shard>.zarr``: ``jets/<column>``, ``<block>/counts``, ``<block>/<feature>``.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import zarr
from zarr.codecs import BloscCodec

from jetstore.store.format.base import ShardReader, ShardWriter
from jetstore.store.table import BlockData, JetTable

COUNTS = "counts"
JETS = "jets"


class _ChunkAlignedAppender:
    """Appends to a 1-D Zarr array in whole chunks so no chunk is ever rewritten."""

    def __init__(self, array: zarr.Array):
        self.array = array
        self.chunk = array.chunks[0]
        self.pending: list[np.ndarray] = []
        self.pending_size = 0
        self.size = 0

    def append(self, values: np.ndarray) -> None:
        if len(values):
            self.pending.append(values)
            self.pending_size += len(values)
        if self.pending_size >= self.chunk:
            self.flush(final=False)

    def flush(self, final: bool) -> None:
        if not self.pending:
            return
        data = np.concatenate(self.pending) if len(self.pending) > 1 else self.pending[0]
        cut = len(data) if final else len(data) - len(data) % self.chunk
        if cut:
            self.array.resize((self.size + cut,))
            self.array[self.size:self.size + cut] = data[:cut]
            self.size += cut
        rest = data[cut:]
        self.pending = [rest] if len(rest) else []
        self.pending_size = len(rest)


class ZarrShardWriter(ShardWriter):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.group = zarr.open_group(store=str(self.path), mode="w", zarr_format=3)
        self.appenders: dict[tuple[str, str], _ChunkAlignedAppender] = {}
        jets = self.group.create_group(JETS)
        for column in self.schema.jet_columns:
            self._array(jets, (JETS, column.name), self.dtypes[column.name], self.layout.chunk_jets)
        for block in self.schema.blocks:
            group = self.group.create_group(block.name)
            self._array(group, (block.name, COUNTS), "int32", self.layout.chunk_jets)
            for feature in block.features:
                self._array(group, (block.name, feature.name), self.dtypes[feature.name], self.layout.chunk_values)

    def _array(self, group: zarr.Group, key: tuple[str, str], dtype: str, chunk: int) -> None:
        array = group.create_array(
            key[1], shape=(0,), chunks=(chunk,), dtype=dtype, fill_value=0,
            compressors=BloscCodec(cname="zstd", clevel=self.layout.compression_level, shuffle="bitshuffle"),
        )
        self.appenders[key] = _ChunkAlignedAppender(array)

    def write(self, table: JetTable) -> None:
        for name, values in table.jets.items():
            self.appenders[(JETS, name)].append(values)
        for block_name, block in table.blocks.items():
            self.appenders[(block_name, COUNTS)].append(block.counts.astype(np.int32, copy=False))
            for name, values in block.features.items():
                self.appenders[(block_name, name)].append(values)

    def close(self) -> None:
        for appender in self.appenders.values():
            appender.flush(final=True)
        self.group.attrs["n_jets"] = self.appenders[(JETS, self.schema.jet_columns[0].name)].size


class ZarrShardReader(ShardReader):
    def read(self, jet_columns: Iterable[str] | None = None, blocks: Iterable[str] | None = None) -> JetTable:
        store = zarr.storage.FsspecStore(fs=_async(self.fs), path=self.path, read_only=True) \
            if not _is_local(self.fs) else zarr.storage.LocalStore(self.path, read_only=True)
        group = zarr.open_group(store=store, mode="r", zarr_format=3)
        jet_names = list(jet_columns) if jet_columns is not None else [c.name for c in self.schema.jet_columns]
        block_names = list(blocks) if blocks is not None else [b.name for b in self.schema.blocks]
        jets = {name: group[f"{JETS}/{name}"][:] for name in jet_names}
        out_blocks = {}
        for block in block_names:
            features = {f.name: group[f"{block}/{f.name}"][:] for f in self.schema.block(block).features}
            out_blocks[block] = BlockData(group[f"{block}/{COUNTS}"][:], features)
        return JetTable(jets, out_blocks)


def _is_local(fs) -> bool:
    return "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,))


def _async(fs):
    if getattr(fs, "async_impl", False):
        return fs
    from fsspec.implementations.asyn_wrapper import AsyncFileSystemWrapper

    return AsyncFileSystemWrapper(fs)
