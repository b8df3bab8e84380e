"""Checking cached bytes before they are served.

Two checks, as much as an object partly cached allows:

* every extent against the xxh3-64 digest recorded when it was downloaded (local damage: a torn write, a bad
  disk, a hand-edited file), on every read;
* a completely cached object against the manifest's checksum of the shard file (xxh3-64 of its bytes, as
  ``jetstore verify`` checks it), once, when its last extent arrives: this also catches bytes the storage
  returned wrong.

A partly cached object cannot be checked against the manifest (its checksum covers the whole file); its bytes
are those the storage returned, and every chunk a reader decodes is checked against its own CRC (Zarr chunk
CRC-32s in the zip directory, Parquet page CRCs), as when reading without a cache.
"""

from __future__ import annotations

import os

import xxhash
from fsspec.implementations.local import LocalFileSystem

from jetstore.store.checksum import file_checksum


def digest(data: bytes | memoryview) -> int:
    """The digest recorded for an extent."""
    return xxhash.xxh3_64_intdigest(data)


def file_matches(path: str, size: int, checksum: str) -> bool:
    """Whether the local file ``path`` holds ``size`` bytes with the manifest's ``checksum`` (computed as
    ``jetstore verify`` computes it)."""
    return os.path.getsize(path) == size and file_checksum(LocalFileSystem(), path) == checksum
