"""Storage formats behind a registry: ``FORMATS[name]`` gives the shard writer/reader pair.

Adding a format is one folder ``format/<name>/`` (a writer and a reader, see ``base.py``) and one line here.
"""

from jetstore.errors import JetstoreError
from jetstore.store.format import parquet, zarr
from jetstore.store.format.base import Format, ReadPlan, ShardReader, ShardWriter

FORMATS: dict[str, Format] = {f.name: f for f in (zarr.FORMAT, parquet.FORMAT)}


def get_format(name: str) -> Format:
    try:
        return FORMATS[name]
    except KeyError:
        raise JetstoreError(f"unknown format '{name}' (choose from {', '.join(FORMATS)})") from None


__all__ = ["FORMATS", "Format", "ReadPlan", "ShardReader", "ShardWriter", "get_format"]
