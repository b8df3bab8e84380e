"""Storage formats behind a registry: ``FORMATS[name]`` gives the shard writer/reader pair."""

from jetstore.errors import JetstoreError
from jetstore.store.format.base import Format, Layout, ShardReader, ShardWriter
from jetstore.store.format.parquet import ParquetShardReader, ParquetShardWriter
from jetstore.store.format.zarr import ZarrShardReader, ZarrShardWriter

FORMATS: dict[str, Format] = {
    "parquet": Format("parquet", ".parquet", ParquetShardWriter, ParquetShardReader),
    "zarr": Format("zarr", ".zarr.zip", ZarrShardWriter, ZarrShardReader),
}


def get_format(name: str) -> Format:
    try:
        return FORMATS[name]
    except KeyError:
        raise JetstoreError(f"unknown format '{name}' (choose from {', '.join(FORMATS)})") from None


__all__ = ["FORMATS", "Format", "Layout", "ShardReader", "ShardWriter", "get_format"]
