"""In-memory jets: jet-level columns plus, per node block, per-jet counts and flat feature values."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class BlockData:
    """Variable-length node lists of one block: ``counts[i]`` nodes for jet i, features flattened."""

    counts: np.ndarray
    features: dict[str, np.ndarray]

    @property
    def offsets(self) -> np.ndarray:
        return offsets_of(self.counts)

    def slice(self, start: int, stop: int) -> BlockData:
        offsets = self.offsets
        lo, hi = offsets[start], offsets[stop]
        return BlockData(self.counts[start:stop], {k: v[lo:hi] for k, v in self.features.items()})

    def take(self, rows: np.ndarray) -> BlockData:
        index = value_index(self.offsets, rows)
        return BlockData(self.counts[rows], {k: v[index] for k, v in self.features.items()})


def offsets_of(counts: np.ndarray) -> np.ndarray:
    """Zero-based int64 offsets of consecutive lists of ``counts`` entries (one more than there are lists)."""
    offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return offsets


def value_index(offsets: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Positions in the flat values of the nodes of ``rows``, in row order."""
    starts = offsets[rows]
    counts = offsets[rows + 1] - starts
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    shifts = np.repeat(starts - np.concatenate(([0], np.cumsum(counts)[:-1])), counts)
    return np.arange(total, dtype=np.int64) + shifts


@dataclass(frozen=True)
class JetTable:
    """A batch of jets in columnar form, the unit passed between reader, converter and shard writers."""

    jets: dict[str, np.ndarray]
    blocks: dict[str, BlockData]

    @property
    def n_jets(self) -> int:
        """How many jets: the length of a jet column, or of a block's counts when only node columns are held."""
        if self.jets:
            return len(next(iter(self.jets.values())))
        return len(next(iter(self.blocks.values())).counts) if self.blocks else 0

    def slice(self, start: int, stop: int) -> JetTable:
        return JetTable(
            {k: v[start:stop] for k, v in self.jets.items()},
            {k: b.slice(start, stop) for k, b in self.blocks.items()},
        )

    def take(self, rows: np.ndarray) -> JetTable:
        """The jets at ``rows`` (any order, repeats allowed)."""
        return JetTable({k: v[rows] for k, v in self.jets.items()}, {k: b.take(rows) for k, b in self.blocks.items()})

    @staticmethod
    def concat(tables: list[JetTable]) -> JetTable:
        if len(tables) == 1:
            return tables[0]
        first = tables[0]
        return JetTable(
            {k: np.concatenate([t.jets[k] for t in tables]) for k in first.jets},
            {
                name: BlockData(
                    np.concatenate([t.blocks[name].counts for t in tables]),
                    {f: np.concatenate([t.blocks[name].features[f] for t in tables]) for f in block.features},
                )
                for name, block in first.blocks.items()
            },
        )


def is_member(label: np.ndarray) -> np.ndarray:
    """Which jets a one-hot label column puts in its class: value 1 (weaver-core's rule, ``table[label] == 1``)."""
    return np.asarray(label) == 1


def class_index(one_hot: list[np.ndarray]) -> np.ndarray:
    """The class of every jet from one-hot label columns: the position of the first label set, -1 where
    none is (the one rule for "which class is a jet", used by sorting, statistics and the sampler)."""
    if not one_hot:
        return np.zeros(0, np.int64)
    stacked = np.stack([is_member(column) for column in one_hot], axis=1)
    return np.where(stacked.any(axis=1), stacked.argmax(axis=1), -1).astype(np.int64)


def overlaps(one_hot: list[np.ndarray]) -> np.ndarray:
    """The jets with more than one one-hot label set: such a jet would count in several classes, so a
    dataset holding one is refused by its own reader (class counts above n_jets)."""
    if not one_hot:
        return np.zeros(0, np.int64)
    return np.nonzero(np.sum([is_member(column) for column in one_hot], axis=0) > 1)[0]


def content_counts(table: JetTable, labels: tuple[str, ...]) -> dict[str, Any]:
    """What a shard record states about its content: jets, jets per set one-hot label, nodes per block
    (``table`` needs the label columns and each block's counts)."""
    return {
        "n_jets": table.n_jets,
        "class_counts": {name: int(np.count_nonzero(is_member(table.jets[name]))) for name in labels},
        "node_counts": {name: int(block.counts.sum()) for name, block in table.blocks.items()},
    }
