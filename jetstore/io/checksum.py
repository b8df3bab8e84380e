"""Content checksums (xxh3-64) of files and of whole shards."""

from __future__ import annotations

from collections.abc import Mapping

import xxhash

from jetstore.io import filesystems
from jetstore.model import paths

CHUNK = 8 << 20


def file_checksum(fs, path: str) -> str:
    """xxh3-64 hex digest of a file on any fsspec filesystem, read in 8 MiB pieces."""
    digest = xxhash.xxh3_64()
    with fs.open(path, "rb", block_size=CHUNK) as handle:
        while piece := handle.read(CHUNK):
            digest.update(piece)
    return digest.hexdigest()


def combined_checksum(files: Mapping[str, tuple[int, str]]) -> str:
    """One checksum for a shard made of several files: hash of the sorted (name, size, checksum) list."""
    digest = xxhash.xxh3_64()
    for name in sorted(files):
        size, checksum = files[name]
        digest.update(f"{name}\0{size}\0{checksum}\n".encode())
    return digest.hexdigest()


def files_intact(fs, path: str, files: Mapping[str, tuple[int, str]]) -> bool:
    """True when every file of a shard at ``path`` exists with the recorded size and checksum."""
    try:
        sizes = filesystems.list_files(fs, path)
    except FileNotFoundError:
        return False
    if sizes != {name: size for name, (size, _) in files.items()}:
        return False
    return all(file_checksum(fs, paths.join(path, name)) == checksum for name, (_, checksum) in files.items())
