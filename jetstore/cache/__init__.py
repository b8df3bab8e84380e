"""A node-local disk cache of the shards a sampler reads from object storage, shared by every rank and
DataLoader worker of the node: later epochs read local disk instead of the object store.

``DiskCache(directory, limit)`` is what a :class:`~jetstore.store.dataset.ShardSource` is given (small and
picklable); each process opens the directory itself. The parts, one job each:

* ``key.py``: what an entry holds (one shard file of one dataset, by its manifest checksum: never stale bytes);
* ``extents.py``: which byte ranges of the object an entry holds (an append-only log);
* ``locks.py``: byte-range and whole-file locks between processes and threads;
* ``store.py``: the directory (entries made and dropped atomically), its usage and eviction under ``limit``;
* ``verify.py``: digests of cached ranges, whole objects against the manifest's checksum;
* ``reader.py``: the byte ranges of one object through the cache (hits, fills, one download per node).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from jetstore.cache.key import ObjectKey
from jetstore.cache.reader import CachedRanges
from jetstore.cache.store import CacheStore, Counters, EntryInfo
from jetstore.errors import SchemaError, StorageError
from jetstore.store.backend import RangeReader
from jetstore.store.manifest import ShardEntry

UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12, "p": 10**15,
         "ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40, "pi": 2**50}
SIZE = re.compile(r"^\s*(\d+(?:\.\d*)?)\s*([kmgtp]i?)?b?\s*$", re.IGNORECASE)


def parse_size(value: int | str | None, name: str = "cache_limit") -> int | None:
    """Bytes from an integer or a size with a unit as Kubernetes writes them: ``500G`` (10^9), ``500Gi``
    (2^30); ``GB`` / ``GiB`` too. None stays None (no limit)."""
    if value is None or (isinstance(value, int) and not isinstance(value, bool) and value > 0):
        return value
    match = SIZE.match(value) if isinstance(value, str) else None
    if match is None or float(match[1]) <= 0:
        raise SchemaError(f"{name} must be a positive size such as 500G or 2Ti, got {value!r}")
    return int(float(match[1]) * UNITS[(match[2] or "").lower()])


@dataclass(frozen=True)
class DiskCache:
    """A node-local cache directory and the most bytes it may take (None: until the disk is full).

    ``since``: when the session using it began (its entries are never evicted for each other).
    """

    directory: str
    limit: int | None = None
    since: float = field(default_factory=time.time)

    @classmethod
    def open(cls, directory: str, limit: int | str | None = None) -> DiskCache:
        """The cache at ``directory`` (made if missing), checked usable now: a one-line error if it is not."""
        directory = os.path.abspath(os.path.expanduser(directory))
        cache = cls(directory, parse_size(limit))
        try:
            cache.store()
        except OSError as exc:
            raise StorageError(f"cache_dir {directory}: cannot be used ({exc.strerror or exc})") from None
        return cache

    def store(self) -> CacheStore:
        """This process's view of the directory."""
        return CacheStore.shared(self.directory, self.limit, self.since)

    def reader(self, remote: RangeReader, url: str, options: Mapping[str, Any] | None,
               shard: ShardEntry) -> RangeReader:
        """The byte ranges of ``shard`` of the dataset at ``url`` (``remote`` reads them from storage), through
        the cache."""
        return CachedRanges(remote, self.store(), ObjectKey.of(url, options, shard))


__all__ = ["CacheStore", "Counters", "DiskCache", "EntryInfo", "ObjectKey", "parse_size"]
