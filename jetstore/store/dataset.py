"""Opening a committed dataset: its manifest, schema, and shard readers."""

from __future__ import annotations

import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow

from jetstore.errors import DatasetError
from jetstore.schema import Schema, schema_from_dict
from jetstore.store import storage
from jetstore.store.format import ShardReader, get_format
from jetstore.store.manifest import Manifest, ShardEntry, read_manifest
from jetstore.store.table import JetTable


@dataclass(frozen=True)
class ShardSource:
    """What a worker needs to read shards of a dataset (small and picklable, unlike the whole manifest)."""

    url: str
    options: Mapping[str, Any]
    format: str
    schema: Schema

    def read_from(self, reader: ShardReader, shard: ShardEntry, jet_columns, features, start: int,
                  stop: int | None) -> JetTable:
        """``reader.read(...)`` with storage and decoding failures turned into errors naming the shard."""
        try:
            return reader.read(jet_columns, features, start, stop)
        except FileNotFoundError:
            raise DatasetError(f"{self.url}: shard {shard.path} listed in the manifest is missing") from None
        except (OSError, ValueError, KeyError, RuntimeError, zipfile.BadZipFile, pyarrow.ArrowException) as exc:
            raise DatasetError(f"{self.url}: shard {shard.path} is damaged or unreadable "
                               f"({type(exc).__name__}: {exc}); `jetstore convert` rerun redoes it") from None

    def reader(self, shard: ShardEntry) -> ShardReader:
        """An open-on-demand reader of one shard (close it when done)."""
        fs, root = storage.filesystem(self.url, self.options)
        return get_format(self.format).reader(fs, storage.join(root, shard.path), self.schema)

    def read(self, shard: ShardEntry, jet_columns: Iterable[str] | None = None,
             features: Mapping[str, Iterable[str]] | None = None, stop: int | None = None) -> JetTable:
        """Read one shard (its first ``stop`` jets); a missing or damaged shard is a :class:`DatasetError`
        naming it."""
        with self.reader(shard) as reader:
            table = self.read_from(reader, shard, jet_columns, features, 0, stop)
        if table.n_jets != (shard.n_jets if stop is None else min(stop, shard.n_jets)):
            raise DatasetError(
                f"{self.url}: shard {shard.path} holds {table.n_jets} jets, manifest says {shard.n_jets}")
        return table


@dataclass(frozen=True)
class Dataset:
    """A dataset at ``url``: read-only access through its manifest."""

    url: str
    manifest: Manifest
    schema: Schema
    fs: Any
    root: str
    options: Mapping[str, Any]

    @classmethod
    def open(cls, url: str, options: Mapping[str, Any] | None = None) -> Dataset:
        opts = storage.resolve_storage_options(url, options)
        fs, root = storage.filesystem(url, opts)
        manifest = read_manifest(fs, root)
        return cls(url, manifest, schema_from_dict(manifest.schema, where=f"{url} manifest"), fs, root, opts)

    @property
    def source(self) -> ShardSource:
        return ShardSource(self.url, self.options, self.manifest.format, self.schema)

    def read_shard(self, shard: ShardEntry, jet_columns: Iterable[str] | None = None,
                   features: Mapping[str, Iterable[str]] | None = None) -> JetTable:
        return self.source.read(shard, jet_columns, features)

    def read_all(self, jet_columns: Iterable[str] | None = None,
                 features: Mapping[str, Iterable[str]] | None = None) -> JetTable:
        """Every shard in manifest order (for tests and small datasets)."""
        tables = [self.read_shard(s, jet_columns, features) for s in self.manifest.shards]
        return JetTable.concat(tables) if tables else JetTable({}, {})
