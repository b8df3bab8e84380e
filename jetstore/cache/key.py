"""What a cache entry holds: one stored object (a shard file) of one dataset, named so that the cache can never
serve bytes of another object or of another version of it.

An entry's name is a digest of the object's place (the storage endpoint, the dataset's URL without credentials
and the shard's path) and of what the manifest says its content is (the shard's checksum and size). A shard
rewritten in place (``--overwrite``, a re-conversion, a new generation) has another checksum, hence another
entry; two datasets, or two endpoints serving the same bucket names, never share one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import xxhash

from jetstore.store import paths, storage
from jetstore.store.manifest import ShardEntry


@dataclass(frozen=True)
class ObjectKey:
    """One stored object as the manifest describes it.

    endpoint: where the dataset lives (an S3 endpoint, or "local disk"); dataset: its URL without credentials;
    path: the shard's path in the dataset; checksum: the shard's checksum in the manifest; file_checksum: the
    object's own (xxh3-64 of its bytes, what a completely cached object is verified against; "" when unknown);
    size: its bytes.
    """

    endpoint: str
    dataset: str
    path: str
    checksum: str
    file_checksum: str
    size: int

    @classmethod
    def of(cls, url: str, options: Mapping[str, Any] | None, shard: ShardEntry) -> ObjectKey:
        size, file_checksum = shard.files.get("", (shard.bytes, ""))
        return cls(storage.endpoint(url, options), cls.dataset_of(url), shard.path, shard.checksum,
                   file_checksum, int(size))

    @staticmethod
    def dataset_of(url: str) -> str:
        """How a dataset's URL is kept: absolute, without credentials or a trailing '/'."""
        return storage.public_url(storage.absolute(url)).rstrip("/")

    @property
    def name(self) -> str:
        """The entry's directory name: a digest of every field."""
        text = "\0".join((self.endpoint, self.dataset, self.path, self.checksum, self.file_checksum, str(self.size)))
        return xxhash.xxh3_128_hexdigest(text.encode())

    @property
    def url(self) -> str:
        """The object's URL, for messages."""
        return paths.join(self.dataset, self.path)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ObjectKey:
        return cls(**{name: data[name] for name in cls.__dataclass_fields__})
