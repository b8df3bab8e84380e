"""Per-shard results of the stats passes, kept with the dataset so a rerun (after an append, or for a union of
datasets that grew) only reads the shards it has not seen.

Pass 1 of a shard (histograms, moments, per-unit cell counts) depends only on the shard, the config and the
fractions (weaver's fraction is the first part of every input file: a shard's share does not change when
inputs are added), so it is reused as it is. Pass 2 (exact order statistics) needs fine histograms inside the
bins where the union's quantiles fall; a shard's fine histograms are kept per bin, and a rerun reads the shard
again only when a quantile moved into a bin it has not counted.

Files: ``<dataset>/_stats/<config>/<fractions>/<shard>.<checksum>.{pass1,pass2}.npz``, plain arrays (loaded
without pickle). A missing, damaged or unwritable cache only costs a recomputation.
"""

from __future__ import annotations

import contextlib
import io
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import xxhash

from jetstore.dataset.manifest import ShardEntry
from jetstore.io import filesystems
from jetstore.io.backend import write_bytes_atomic
from jetstore.model import paths
from jetstore.model.fraction import Fraction

Arrays = dict[str, np.ndarray]
MAX_BYTES = 64 << 20  # one shard's pass results: histograms of a few MB
MAX_ARRAY_BYTES = 256 << 20


@dataclass(frozen=True)
class ShardCache:
    """Where the per-shard results of one config and fractions live in one dataset (small, picklable)."""

    url: str
    options: Mapping[str, Any]
    folder: str  # relative to the dataset root

    @classmethod
    def of(cls, url: str, options: Mapping[str, Any], config_hash: str, standardization: Fraction,
           weights: Fraction) -> ShardCache:
        fractions = xxhash.xxh3_64_hexdigest(repr((standardization.value, standardization.mode, weights.value,
                                                   weights.mode)).encode())
        return cls(url, options, paths.join(paths.STATS, config_hash, fractions))

    def load(self, shard: ShardEntry, kind: str) -> Arrays | None:
        """The arrays kept for ``shard``, or None when absent, damaged, or larger than :data:`MAX_BYTES` packed
        or :data:`MAX_ARRAY_BYTES` unpacked (a file of someone else's dataset is not trusted to fit in memory);
        a regular file only (a FIFO is not waited on)."""
        fs, root = filesystems.filesystem(self.url, self.options)
        try:
            data = filesystems.read_object(fs, self._path(root, shard, kind), MAX_BYTES)
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                if sum(member.file_size for member in archive.infolist()) > MAX_ARRAY_BYTES:
                    return None
            with np.load(io.BytesIO(data), allow_pickle=False) as archive:
                return {name: archive[name] for name in archive.files}
        except (OSError, ValueError, zipfile.BadZipFile, EOFError):  # DocumentError is a ValueError
            return None

    def save(self, shard: ShardEntry, kind: str, arrays: Arrays) -> None:
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)  # type: ignore[arg-type]  # numpy types **kwds as its allow_pickle
        fs, root = filesystems.filesystem(self.url, self.options)
        with contextlib.suppress(OSError):  # a read-only dataset (a colleague's): recompute next time
            write_bytes_atomic(fs, self._path(root, shard, kind), buffer.getvalue())

    def _path(self, root: str, shard: ShardEntry, kind: str) -> str:
        return paths.join(root, self.folder, f"{shard.name}.{shard.checksum[:16]}.{kind}.npz")
