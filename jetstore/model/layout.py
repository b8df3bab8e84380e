"""How a dataset's shards are cut and compressed, and which columns they store: typed, and recorded in
the manifest so every reader sees exactly what the writer did."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from jetstore.errors import DatasetError

CODECS = ("zstd", "lz4")
ENTRY = "_entry"  # provenance column of every dataset: the jet's entry number in its input file
ENTRY_DTYPE = "int64"
INPUT = "_input"  # provenance (format 3): the jet's piece of its shard (shards pack several small inputs)
INPUT_DTYPE = "int32"
PROVENANCE = (ENTRY, INPUT)


@dataclass(frozen=True)
class Layout:
    """Jets per unit (one Zarr jet chunk / Parquet row group: the sampler's read granularity), the most
    node values per Zarr chunk, and the codec: ``zstd`` (default: smallest) or ``lz4`` (fastest). zstd level
    1 is 0.6% larger than level 2 on cms_ak4 and a third faster to write and to read.

    256 jets per unit: weighted epochs that are a fraction of the data read a unit with the probability of its
    largest weight, so units must be small enough to be nearly uniform in weight (on cms_ak4, 1/10 and 1/40
    epochs fetch 2.4× and 9.6× the stored bytes per delivered jet with 2,048-jet units, 1.7× and 2.3× with 256),
    at 5-10% more stored bytes than 2,048 (docs/benchmarks.md)."""

    chunk_jets: int = 256
    chunk_values: int = 16384
    compression_level: int = 1
    codec: str = "zstd"

    def __post_init__(self) -> None:
        for name in ("chunk_jets", "chunk_values"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise DatasetError(f"layout.{name} must be a positive integer, got {value!r}")
        if self.codec not in CODECS:
            raise DatasetError(f"layout.codec must be one of {', '.join(CODECS)}, got {self.codec!r}")
        if not isinstance(self.compression_level, int) or not 0 <= self.compression_level <= 9:
            raise DatasetError(f"layout.compression_level must be an integer 0-9, got {self.compression_level!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"chunk_jets": self.chunk_jets, "chunk_values": self.chunk_values,
                "compression_level": self.compression_level, "codec": self.codec}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Layout:
        return cls(**{k: data[k] for k in ("chunk_jets", "chunk_values", "compression_level", "codec")})


@dataclass(frozen=True)
class BlockColumns:
    """One node block: its features and their storage dtypes, in storage order."""

    name: str
    features: tuple[tuple[str, str], ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.features)


@dataclass(frozen=True)
class TableColumns:
    """Every stored column with its dtype: jet columns (``_entry`` included) and node blocks."""

    jets: tuple[tuple[str, str], ...]
    blocks: tuple[BlockColumns, ...]

    @classmethod
    def build(cls, jets: Iterable[str], blocks: Mapping[str, Iterable[str]], dtypes: Mapping[str, str]) -> TableColumns:
        """From column names (jet columns, then features per block) and the dtype of each; ``_entry`` and
        ``_input`` are appended to the jet columns."""
        dtypes = {ENTRY: ENTRY_DTYPE, INPUT: INPUT_DTYPE, **dtypes}
        names = dict.fromkeys([*jets, *PROVENANCE])
        return cls(tuple((name, dtypes[name]) for name in names),
                   tuple(BlockColumns(b, tuple((f, dtypes[f]) for f in features)) for b, features in blocks.items()))

    @property
    def jet_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.jets)

    @property
    def dtypes(self) -> dict[str, np.dtype]:
        out = {name: np.dtype(dtype) for name, dtype in self.jets}
        for block in self.blocks:
            out.update((name, np.dtype(dtype)) for name, dtype in block.features)
        return out

    def provenance(self) -> tuple[str, ...]:
        """The provenance columns stored (datasets of format 2 have no ``_input``: one piece per shard)."""
        return tuple(name for name in PROVENANCE if name in self.jet_names)

    def block(self, name: str) -> BlockColumns:
        for block in self.blocks:
            if block.name == name:
                return block
        raise KeyError(name)

    def select(self, jet_columns: Iterable[str] | None = None,
               features: Mapping[str, Iterable[str]] | None = None) -> Selection:
        """A column selection (everything where None), checked against what is stored."""
        jets = self.jet_names if jet_columns is None else tuple(jet_columns)
        if features is None:
            blocks = {b.name: b.names for b in self.blocks}
        else:
            blocks = {b: tuple(names) for b, names in features.items()}
        known = set(self.jet_names)
        for name in jets:
            if name not in known:
                raise DatasetError(f"no stored jet column '{name}'")
        for block, names in blocks.items():
            stored = set(self.block(block).names) if block in {b.name for b in self.blocks} else None
            if stored is None:
                raise DatasetError(f"no stored node block '{block}'")
            for name in names:
                if name not in stored:
                    raise DatasetError(f"block '{block}' stores no feature '{name}'")
        return Selection(jets, blocks)

    def to_dict(self) -> dict[str, Any]:
        return {"jets": dict(self.jets), "blocks": {b.name: dict(b.features) for b in self.blocks}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TableColumns:
        return cls(tuple(data["jets"].items()),
                   tuple(BlockColumns(name, tuple(features.items())) for name, features in data["blocks"].items()))


@dataclass(frozen=True)
class Selection:
    """Columns to read: jet columns and, per node block, features (a block with none still gives counts)."""

    jets: tuple[str, ...]
    blocks: dict[str, tuple[str, ...]]

    def __hash__(self) -> int:
        return hash((self.jets, tuple(sorted(self.blocks.items()))))
