"""Zarr v3 shards: one ``.zarr.zip`` per shard, unit-grouped for one-range reads; a root group at the dataset's
root that lists them."""

from jetstore.formats.base import Format
from jetstore.formats.zarr.reader import ZarrShardReader
from jetstore.formats.zarr.root import ROOT
from jetstore.formats.zarr.writer import ZarrShardWriter

FORMAT = Format("zarr", ".zarr.zip", ZarrShardWriter, ZarrShardReader, ROOT)
