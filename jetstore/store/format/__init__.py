"""Storage formats behind a registry: ``FORMATS.get(name)`` gives the shard writer/reader pair.

Adding a format is one folder ``format/<name>/`` (a writer and a reader, see ``base.py``) and one line here, or
a third-party package's ``jetstore.formats`` entry point (:mod:`jetstore.registry`).
"""

from jetstore.registry import Registry
from jetstore.store.format import parquet, zarr
from jetstore.store.format.base import Format, ReadPlan, RootFiles, ShardReader, ShardWriter

FORMATS: Registry[Format] = Registry("format", "jetstore.formats", (zarr.FORMAT, parquet.FORMAT))


def get_format(name: str) -> Format:
    return FORMATS.get(name)


__all__ = ["FORMATS", "Format", "ReadPlan", "RootFiles", "ShardReader", "ShardWriter", "get_format"]
