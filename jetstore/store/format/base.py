"""Interfaces of a storage format: a shard writer (local staging path) and a shard reader (any fsspec fs)."""

from __future__ import annotations

import io
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
    chunk_values: int = 16384
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
    """Reads a shard (or some of its columns and jets) back into a :class:`JetTable`.

    The shard is opened on first use and kept open until :meth:`close`, so reading it piece by piece
    (as the sampler does) costs one open; ``bytes_read`` counts the bytes fetched from storage.
    """

    def __init__(self, fs: fsspec.AbstractFileSystem, path: str, schema: Schema):
        self.fs, self.path, self.schema = fs, path, schema
        self._file: CountingFile | None = None

    @abstractmethod
    def read(self, jet_columns: Iterable[str] | None = None, features: Mapping[str, Iterable[str]] | None = None,
             start: int = 0, stop: int | None = None) -> JetTable:
        """Read the named jet columns and, per block, the named features (everything when None), of jets
        ``[start, stop)``, touching only the chunks / row groups that hold them."""

    @property
    def bytes_read(self) -> int:
        return self._file.bytes_read if self._file is not None else 0

    def _open(self) -> CountingFile:
        if self._file is None:
            self._file = CountingFile(self.fs.open(self.path, "rb"))
        return self._file

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> ShardReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _selection(self, jet_columns, features) -> tuple[list[str], dict[str, list[str]]]:
        jets = list(jet_columns) if jet_columns is not None else [c.name for c in self.schema.jet_columns]
        if features is None:
            features = {b.name: [f.name for f in b.features] for b in self.schema.blocks}
        return jets, {block: list(names) for block, names in features.items()}


class CountingFile(io.RawIOBase):
    """A read-only file wrapper that counts the bytes read through it."""

    def __init__(self, handle):
        super().__init__()
        self.handle = handle
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        data = self.handle.read(size)
        self.bytes_read += len(data)
        return data

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.handle.seek(offset, whence)

    def tell(self) -> int:
        return self.handle.tell()

    def close(self) -> None:
        self.handle.close()
        super().close()


@dataclass(frozen=True)
class Format:
    """A registered storage format: shard file suffix plus its writer and reader classes."""

    name: str
    suffix: str
    writer: type[ShardWriter]
    reader: type[ShardReader]
