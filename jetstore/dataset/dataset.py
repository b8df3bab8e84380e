"""Opening a committed dataset: its manifest and schema, shard readers, and verification."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from jetstore.dataset.manifest import Manifest, ShardEntry, read_manifest
from jetstore.errors import DatasetError
from jetstore.formats import ShardReader, get_format
from jetstore.formats.base import ShardBounds
from jetstore.io import filesystems, locations, settings, storage_errors
from jetstore.io.backend import RangeReader, open_backend
from jetstore.io.checksum import files_intact
from jetstore.io.ranges import ByteSource
from jetstore.model import paths
from jetstore.model.layout import Layout, TableColumns
from jetstore.model.table import JetTable, content_counts
from jetstore.schema import Schema, schema_from_dict


class RangeCache(Protocol):
    """Where a shard's byte ranges may be read instead of the storage (``jetstore.cache.DiskCache``)."""

    def reader(self, remote: RangeReader, url: str, options: Mapping[str, Any], shard: ShardEntry) -> RangeReader: ...


@dataclass(frozen=True)
class ShardSource:
    """What a worker needs to read shards of a dataset (small and picklable, unlike the whole manifest)."""

    url: str
    options: Mapping[str, Any]
    format: str
    columns: TableColumns
    layout: Layout | None = None
    cache: RangeCache | None = None

    def reader(self, shard: ShardEntry) -> ShardReader:
        """A reader of one shard (its metadata read once per process, then cached), bounded by what the
        manifest says of it."""
        size = shard.files.get("", (shard.bytes, ""))[0]
        backend = open_backend(self.url, self.options)
        ranges = self.cache.reader(backend.ranges(shard.path, size), self.url, self.options, shard) if self.cache \
            else None
        source = ByteSource(backend, shard.path, size, ranges)
        bounds = ShardBounds(shard.n_jets, shard.node_counts, self.layout.chunk_jets if self.layout else None,
                             self.layout.chunk_values if self.layout else None)
        return get_format(self.format).reader(source, self.columns, shard.n_jets, f"{self.url}: shard {shard.path}",
                                              cache_key=(paths.join(self.url, shard.path), shard.checksum),
                                              bounds=bounds)

    def read(self, shard: ShardEntry, jet_columns: Iterable[str] | None = None,
             features: Mapping[str, Iterable[str]] | None = None, start: int = 0, stop: int | None = None) -> JetTable:
        """Jets ``[start, stop)`` of one shard (the named columns; everything when None)."""
        return self.reader(shard).read(self.columns.select(jet_columns, features), start, stop)


@dataclass(frozen=True)
class Dataset:
    """A committed dataset: read-only access through its manifest. Open one with :meth:`open`.

    Attributes
    ----------
    url
        Where it is: an absolute local path or an fsspec URL (``s3://bucket/prefix``).
    manifest
        Its :class:`~jetstore.dataset.manifest.Manifest`: inputs, shards with their counts and checksums, format,
        layout and stored columns.
    schema
        The :class:`~jetstore.schema.Schema` it was converted with.
    fs
        The fsspec filesystem it is on.
    root
        Its root path on ``fs``.
    options
        The storage options it was opened with (credentials included: never log them).
    """

    url: str
    manifest: Manifest
    schema: Schema
    fs: Any
    root: str
    options: Mapping[str, Any]

    @classmethod
    def open(cls, url: str, options: Mapping[str, Any] | None = None) -> Dataset:
        """Open the dataset at ``url``: read and validate its manifest (with few retries and short timeouts, so a
        wrong endpoint, TLS mismatch or credentials fail in seconds).

        Parameters
        ----------
        url
            A local path (made absolute, so Dask workers in other directories find it) or an fsspec URL
            (``s3://bucket/prefix``).
        options
            fsspec storage options (endpoint, credentials); default: the ``AWS_*`` environment variables.

        Returns
        -------
        Dataset
            The dataset; its shards are read only when asked (:meth:`read_shard`, :meth:`verify`).

        Raises
        ------
        DatasetError
            No manifest at ``url`` (not a dataset, or its conversion has not committed), or a manifest that is
            malformed, fails its checksum or names an unknown format; the message names the file and the key.
        StorageError
            The storage cannot be used (unreachable endpoint, no or refused credentials, TLS mismatch, no bucket):
            one line naming the URL and the cause.
        """
        url = locations.dataset_location(url)
        opts = settings.resolve_storage_options(url, options)
        with storage_errors.access(url, opts):
            # the manifest with few retries and short timeouts: a wrong endpoint, TLS or credentials fail in seconds
            manifest = read_manifest(*filesystems.filesystem(url, settings.probe_options(opts)))
        fs, root = filesystems.filesystem(url, opts)
        get_format(manifest.format)
        return cls(url, manifest, schema_from_dict(manifest.schema, where=f"{url} manifest"), fs, root, opts)

    @property
    def source(self) -> ShardSource:
        return ShardSource(self.url, self.options, self.manifest.format, self.manifest.columns, self.manifest.layout)

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
        every chunk of every column decoded, and its jet, per-class and per-block node counts against the
        manifest."""
        if not files_intact(self.fs, paths.join(self.root, shard.path), shard.files):
            return ["missing, or its bytes do not match the checksum"]
        try:
            table = self.read_shard(shard)
        except DatasetError as exc:
            return [str(exc)]
        observed = content_counts(table, self.schema.label_names)
        return [f"{key} is {observed[key]} in the shard, {getattr(shard, key)} in the manifest"
                for key in ("n_jets", "class_counts", "node_counts") if observed[key] != getattr(shard, key)]
