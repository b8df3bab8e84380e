"""Zarr v3 shards: one ``.zarr.zip`` per shard, unit-grouped for one-range reads; a root group at the dataset's
root that lists them."""

from jetstore.store.format.base import Format
from jetstore.store.format.zarr.reader import ZarrShardReader
from jetstore.store.format.zarr.root import ROOT
from jetstore.store.format.zarr.writer import ZarrShardWriter

FORMAT = Format("zarr", ".zarr.zip", ZarrShardWriter, ZarrShardReader, ROOT)
