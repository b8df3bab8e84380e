"""The units of a dataset and what each is expected to give, known without reading it.

A unit is a run of ``unit_jets`` consecutive stored jets of one shard (one Zarr jet chunk / Parquet row
group: one range read). ``jetstore stats`` recorded how many selected jets of each unit fall in each cell
(:mod:`jetstore.stats.cells`), so with the cell weights ``w`` a unit's expected deliveries per class at epoch
scale 1, ``E[u, c] = Σ_cells n · w``, and its largest row weight ``m_u`` are known up front.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from jetstore.store.manifest import Manifest


@dataclass(frozen=True)
class UnitTable:
    """All units of a dataset as parallel arrays."""

    shard: np.ndarray       # index into manifest.shards
    start: np.ndarray       # first jet (within the shard)
    stop: np.ndarray
    expected: np.ndarray    # [unit, class]: expected deliveries at scale 1
    max_weight: np.ndarray  # largest row weight at scale 1
    unit_jets: int

    def __len__(self) -> int:
        return len(self.shard)

    @property
    def n_classes(self) -> int:
        return self.expected.shape[1]

    @property
    def total(self) -> np.ndarray:
        """Expected deliveries of every unit at scale 1."""
        return self.expected.sum(axis=1)


def build_units(manifest: Manifest, unit_jets: int, unit_counts: dict[str, np.ndarray] | None,
                cell_weights: np.ndarray, n_classes: int) -> UnitTable:
    """Units of every shard with their expectations, from the per-unit cell counts recorded by
    ``jetstore stats`` (``unit_counts`` None: no stats; every stored jet counts once, in class 0)."""
    sizes = [-(-shard.n_jets // unit_jets) for shard in manifest.shards]
    shard = np.repeat(np.arange(len(sizes)), sizes).astype(np.int64)
    start = (np.concatenate([np.arange(n) for n in sizes]) * unit_jets).astype(np.int64) if sizes else shard
    n_jets = np.array([s.n_jets for s in manifest.shards], np.int64)
    stop = np.minimum(start + unit_jets, n_jets[shard]) if len(shard) else start
    if unit_counts is None:
        expected = (stop - start).astype(np.float64)[:, None]
        return UnitTable(shard, start, stop, expected, np.ones(len(shard)), unit_jets)
    expected = np.zeros((len(shard), n_classes))
    max_weight = np.zeros(len(shard))
    first_unit = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    cells_per_class = len(cell_weights) // n_classes
    for index, entry in enumerate(manifest.shards):
        rows = unit_counts.get(entry.name)
        if rows is None or not len(rows):
            continue
        units, cells, counts = first_unit[index] + rows[:, 0], rows[:, 1], rows[:, 2]
        weight = cell_weights[cells]
        np.add.at(expected, (units, cells // cells_per_class), counts * weight)
        np.maximum.at(max_weight, units, np.where(counts > 0, weight, 0.0))
    return UnitTable(shard, start, stop, expected, max_weight, unit_jets)
