"""Opening a committed dataset: its manifest and schema, shard readers, and verification."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from jetstore.errors import DatasetError
from jetstore.schema import Schema, schema_from_dict
from jetstore.store import paths, storage
from jetstore.store.checksum import files_intact
from jetstore.store.format import ShardReader, get_format
from jetstore.store.layout import TableColumns
from jetstore.store.manifest import Manifest, ShardEntry, read_manifest
from jetstore.store.ranges import ByteSource
from jetstore.store.table import JetTable, content_counts


@dataclass(frozen=True)
class ShardSource:
    """What a worker needs to read shards of a dataset (small and picklable, unlike the whole manifest)."""

    url: str
    options: Mapping[str, Any]
    format: str
    columns: TableColumns

    def reader(self, shard: ShardEntry) -> ShardReader:
        """A reader of one shard (its metadata read once per process, then cached)."""
        fs, root = storage.filesystem(self.url, self.options)
        size = shard.files.get("", (shard.bytes, ""))[0]
        source = ByteSource(fs, paths.join(root, shard.path), size)
        return get_format(self.format).reader(source, self.columns, shard.n_jets, f"{self.url}: shard {shard.path}",
                                              cache_key=(paths.join(self.url, shard.path), shard.checksum))

    def read(self, shard: ShardEntry, jet_columns: Iterable[str] | None = None,
             features: Mapping[str, Iterable[str]] | None = None, start: int = 0, stop: int | None = None) -> JetTable:
        """Jets ``[start, stop)`` of one shard (the named columns; everything when None)."""
        return self.reader(shard).read(self.columns.select(jet_columns, features), start, stop)


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
        with storage.access(url, opts):
            # the manifest with few retries and short timeouts: a wrong endpoint, TLS or credentials fail in seconds
            manifest = read_manifest(*storage.filesystem(url, storage.probe_options(opts)))
        fs, root = storage.filesystem(url, opts)
        get_format(manifest.format)
        return cls(url, manifest, schema_from_dict(manifest.schema, where=f"{url} manifest"), fs, root, opts)

    @property
    def source(self) -> ShardSource:
        return ShardSource(self.url, self.options, self.manifest.format, self.manifest.columns)

    @property
    def unit_jets(self) -> int:
        return self.manifest.unit_jets

    def read_shard(self, shard: ShardEntry, jet_columns: Iterable[str] | None = None,
                   features: Mapping[str, Iterable[str]] | None = None, stop: int | None = None) -> JetTable:
        return self.source.read(shard, jet_columns, features, stop=stop)

    def read_all(self, jet_columns: Iterable[str] | None = None,
                 features: Mapping[str, Iterable[str]] | None = None) -> JetTable:
        """Every shard in manifest order (for tests and small datasets)."""
        tables = [self.read_shard(s, jet_columns, features) for s in self.manifest.shards]
        return JetTable.concat(tables) if tables else JetTable({}, {})

    def verify(self, shard: ShardEntry) -> list[str]:
        """What is wrong with a shard (nothing: ``[]``): its files against their sizes and checksums, then
        its jet, per-class and per-block node counts against the manifest."""
        if not files_intact(self.fs, paths.join(self.root, shard.path), shard.files):
            return ["missing, or its bytes do not match the checksum"]
        try:
            table = self.read_shard(shard, self.schema.label_names, {b.name: () for b in self.schema.blocks})
        except DatasetError as exc:
            return [str(exc)]
        observed = content_counts(table, self.schema.label_names)
        return [f"{key} is {observed[key]} in the shard, {getattr(shard, key)} in the manifest"
                for key in ("n_jets", "class_counts", "node_counts") if observed[key] != getattr(shard, key)]
