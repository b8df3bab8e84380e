"""The units of the data and what each is expected to give, known without reading it.

A unit is a run of ``unit_jets`` consecutive stored jets of one shard (one Zarr jet chunk / Parquet row group:
one range read). ``jetstore stats`` recorded how many selected jets of each unit fall in each cell
(:mod:`jetstore.model.cells`), so with the cell weights ``w`` a unit's expected deliveries per class at epoch
scale 1, ``E[u, c] = f · Σ_cells n · w``, and its largest row weight ``m_u`` are known up front; ``f`` is its
sample's factor (1, or what makes the samples' shares the proportions asked for). Units are also ranked by
(sample, dominant class, mean cell): within a class, by pT (the cells run over pT bins first), so that a
balanced draw along that order gives every (class, pT) stretch its expected number of units; each unit's
(sample, dominant class, pT bin with most of its jets) is its finest stratum, which ``read_factor="auto"`` fills.

Units of several datasets (a :class:`~jetstore.dataset.collection.Collection`) are numbered dataset after
dataset; each knows its shard (global position), its sample and its size (datasets may differ in unit size).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np

from jetstore.dataset.collection import Collection
from jetstore.errors import SchemaError


@dataclass(frozen=True)
class UnitTable:
    """All units as parallel arrays."""

    shard: np.ndarray       # global shard index (Collection.shards() order)
    start: np.ndarray       # first jet (within the shard)
    stop: np.ndarray
    sample: np.ndarray      # sample index (Collection.samples)
    expected: np.ndarray    # [unit, class]: expected deliveries at scale 1
    max_weight: np.ndarray  # largest row weight at scale 1 (sample factor included)
    factor: np.ndarray      # the sample factor of every unit's row weights
    order: np.ndarray       # units by (sample, dominant class, place in the class's cells: pT), for balanced draws
    bin: np.ndarray         # every unit's (sample, dominant class, dominant pT bin), numbered: the finest strata
    n_samples: int = 1

    def __len__(self) -> int:
        return len(self.shard)

    @cached_property
    def rank(self) -> np.ndarray:
        """Every unit's place in :attr:`order`."""
        rank = np.empty(len(self.order), np.int64)
        rank[self.order] = np.arange(len(self.order))
        return rank

    @property
    def n_classes(self) -> int:
        return self.expected.shape[1]

    @property
    def n_strata(self) -> int:
        """Batches mix (sample, class) strata in their expected proportions."""
        return self.n_samples * self.n_classes

    @property
    def total(self) -> np.ndarray:
        """Expected deliveries of every unit at scale 1."""
        return self.expected.sum(axis=1)

    @property
    def unit_jets(self) -> int:
        """The largest unit (for sizing buffers)."""
        return int((self.stop - self.start).max(initial=1))

    def dominant_strata(self, units: np.ndarray, yields: np.ndarray) -> np.ndarray:
        """The stratum each of ``units`` (with per-class ``yields``) mostly gives."""
        return self.sample[units] * self.n_classes + yields.argmax(axis=1)

    def stratum_totals(self) -> np.ndarray:
        """Expected deliveries of every stratum at scale 1."""
        totals = np.zeros((self.n_samples, self.n_classes))
        np.add.at(totals, self.sample, self.expected)
        return totals.ravel()

    def scaled(self, share: float) -> UnitTable:
        """Expectations times ``share`` (a split's part of the jets)."""
        return replace(self, expected=self.expected * share)


def build_units(collection: Collection, unit_counts: Mapping[str, np.ndarray] | None, cell_weights: np.ndarray,
                n_classes: int, proportions: Mapping[str, float] | None = None, pt_bins: int = 1) -> UnitTable:
    """Units of every shard of every dataset with their expectations, from the per-unit cell counts recorded by
    ``jetstore stats`` (``unit_counts`` None: no stats; every stored jet counts once, in class 0); ``pt_bins``:
    the cells' bins along pT (the cells of a class run over them first)."""
    parts = []
    for index, (owner, entry) in enumerate(collection.shards()):
        unit = collection.members[owner].dataset.unit_jets
        starts = np.arange(0, entry.n_jets, unit, dtype=np.int64)
        parts.append((index, owner, collection.shard_key(owner, entry), starts, np.minimum(starts + unit,
                                                                                           entry.n_jets), unit))
    sizes = [len(p[3]) for p in parts]
    shard = np.repeat([p[0] for p in parts], sizes).astype(np.int64)
    member = np.repeat([p[1] for p in parts], sizes).astype(np.int64)
    start = np.concatenate([p[3] for p in parts]) if parts else np.zeros(0, np.int64)
    stop = np.concatenate([p[4] for p in parts]) if parts else np.zeros(0, np.int64)
    sample = np.array([collection.sample_of(m) for m in range(len(collection))], np.int64)[member] \
        if len(member) else member
    n_samples = len(collection.samples)
    if unit_counts is None:
        expected = (stop - start).astype(np.float64)[:, None]
        table = UnitTable(shard, start, stop, sample, expected, np.ones(len(shard)), np.ones(len(shard)),
                          np.lexsort((start, shard, sample)), sample, n_samples)
        return _with_proportions(table, collection, proportions)
    expected = np.zeros((len(shard), n_classes))
    max_weight = np.zeros(len(shard))
    jets, place = np.zeros(len(shard)), np.zeros(len(shard))  # selected jets, Σ of their cells within the class
    in_bin = np.zeros((len(shard), pt_bins))  # selected jets per pT bin
    first_unit = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    cells_per_class = len(cell_weights) // n_classes
    for index, _, key, _, _, _ in parts:
        rows = unit_counts.get(key)
        if rows is None or not len(rows):
            continue
        units, cells, counts = first_unit[index] + rows[:, 0], rows[:, 1], rows[:, 2]
        weight = cell_weights[cells]
        np.add.at(expected, (units, cells // cells_per_class), counts * weight)
        np.maximum.at(max_weight, units, np.where(counts > 0, weight, 0.0))
        np.add.at(jets, units, counts)
        np.add.at(place, units, counts * (cells % cells_per_class))
        np.add.at(in_bin, (units, cells % cells_per_class // (cells_per_class // pt_bins)), counts)
    # the cells of a class run over pT bins (x) first: a unit's mean cell is its place in the class's pT order
    dominant = sample * n_classes + expected.argmax(axis=1)
    order = np.lexsort((start, shard, place / np.maximum(jets, 1), dominant))
    table = UnitTable(shard, start, stop, sample, expected, max_weight, np.ones(len(shard)), order,
                      dominant * pt_bins + in_bin.argmax(axis=1), n_samples)
    return _with_proportions(table, collection, proportions)


def _with_proportions(units: UnitTable, collection: Collection, proportions: Mapping[str, float] | None) -> UnitTable:
    """Rescale each sample's weights so the samples' shares of the expected deliveries are ``proportions``
    (normalised; the total stays Σw). Without proportions the samples keep their natural shares."""
    if not proportions:
        return units
    names = collection.samples
    unknown = sorted(set(proportions) - set(names))
    if unknown:
        raise SchemaError(f"proportions name sample(s) {', '.join(unknown)}, not among {', '.join(names)}")
    wanted = np.array([float(proportions.get(name, 0.0)) for name in names])
    if (wanted < 0).any() or wanted.sum() <= 0 or not np.isfinite(wanted).all():
        raise SchemaError("proportions must be non-negative numbers, not all zero")
    natural = np.bincount(units.sample, weights=units.total, minlength=len(names))
    empty = [names[k] for k in np.nonzero((natural <= 0) & (wanted > 0))[0]]
    if empty:
        raise SchemaError(f"sample(s) {', '.join(empty)} have no jet to sample (proportion asked, none selected)")
    factor = np.where(natural > 0, wanted / wanted.sum() * natural.sum() / np.maximum(natural, 1e-300), 0.0)
    per_unit = factor[units.sample]
    return replace(units, expected=units.expected * per_unit[:, None], max_weight=units.max_weight * per_unit,
                   factor=per_unit)
