"""Interfaces of a storage format: a shard writer (local staging path) and a shard reader (any fsspec fs)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import fsspec

from jetstore.schema import Schema
from jetstore.store.table import JetTable

CODECS = ("zstd", "lz4")


@dataclass(frozen=True)
class Layout:
    """How a shard is cut and compressed: jets per chunk (Zarr) / row group (Parquet), values per Zarr
    chunk, and the codec: ``zstd`` (default: smallest) or ``lz4`` (fastest to write and read)."""

    chunk_jets: int = 2048
    chunk_values: int = 32768
    compression_level: int = 2
    codec: str = "zstd"


class ShardWriter(ABC):
    """Writes one shard to a local path, fed :class:`JetTable` pieces of any size."""

    def __init__(self, path: Path, schema: Schema, dtypes: dict[str, str], layout: Layout):
        self.path, self.schema, self.dtypes, self.layout = path, schema, dtypes, layout

    @abstractmethod
    def write(self, table: JetTable) -> None: ...

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            self.close()


class ShardReader(ABC):
    """Reads a shard (or some of its columns) back into a :class:`JetTable`."""

    def __init__(self, fs: fsspec.AbstractFileSystem, path: str, schema: Schema):
        self.fs, self.path, self.schema = fs, path, schema

    @abstractmethod
    def read(self, jet_columns: Iterable[str] | None = None,
             features: Mapping[str, Iterable[str]] | None = None, stop: int | None = None) -> JetTable:
        """Read the named jet columns and, per block, the named features (everything when None), of the
        first ``stop`` jets (all when None), touching only the chunks / row groups that hold them."""

    def _selection(self, jet_columns, features) -> tuple[list[str], dict[str, list[str]]]:
        jets = list(jet_columns) if jet_columns is not None else [c.name for c in self.schema.jet_columns]
        if features is None:
            features = {b.name: [f.name for f in b.features] for b in self.schema.blocks}
        return jets, {block: list(names) for block, names in features.items()}


@dataclass(frozen=True)
class Format:
    """A registered storage format: shard file suffix plus its writer and reader classes."""

    name: str
    suffix: str
    writer: type[ShardWriter]
    reader: type[ShardReader]
