"""Zarr v3 shards: one ``.zarr.zip`` per shard, unit-grouped for one-range reads."""

from jetstore.store.format.base import Format
from jetstore.store.format.zarr.reader import ZarrShardReader
from jetstore.store.format.zarr.writer import ZarrShardWriter

FORMAT = Format("zarr", ".zarr.zip", ZarrShardWriter, ZarrShardReader)
