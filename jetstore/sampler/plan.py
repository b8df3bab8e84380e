"""Which units of jets each slot reads in an epoch, and how many batches it yields.

A unit is a run of ``unit_jets`` consecutive stored jets of one shard (a Zarr jet chunk / Parquet row
group). ``jetstore stats`` recorded how many jets of each unit fall in each reweighting cell, so a unit's
expected contribution ``E_u = Σ n_cell · s·w_cell`` and its largest row weight ``m_u = max s·w_cell`` are
known without reading it.

Two-stage sampling, unbiased for weaver's semantics (a jet of weight w is used with probability w, times
the epoch scale s): a unit is read with probability ``r_u = min(1, m_u)``; a row of a read unit is then
delivered ``floor(q) + Bernoulli(frac(q))`` times with ``q = s·w / r_u``. Each row's expected multiplicity is
``r_u · q = s·w``. Since shards are sorted by (label, pT), rows of a unit share nearly the same weight, so
``q`` is close to 1 for the rows read: what is read is what is kept, up to unit granularity.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np

from jetstore.store.manifest import Manifest


@dataclass(frozen=True)
class UnitTable:
    """All units of a dataset as parallel arrays."""

    shard: np.ndarray      # index into manifest.shards
    start: np.ndarray      # first jet (within the shard)
    stop: np.ndarray
    expected: np.ndarray   # expected deliveries at scale 1
    max_weight: np.ndarray  # largest row weight at scale 1

    def __len__(self) -> int:
        return len(self.shard)


def build_units(manifest: Manifest, unit_jets: int, unit_counts: dict[str, np.ndarray] | None,
                cell_weights: np.ndarray | None) -> UnitTable:
    """Units of every shard with their expectations, from the per-unit cell counts recorded by
    ``jetstore stats`` (``cell_weights`` None: every counted jet weighs 1; ``unit_counts`` None: no stats,
    every stored jet counts with weight 1)."""
    sizes = [-(-shard.n_jets // unit_jets) for shard in manifest.shards]
    shard = np.repeat(np.arange(len(sizes)), sizes).astype(np.int64)
    start = (np.concatenate([np.arange(n) for n in sizes]) * unit_jets).astype(np.int64) if sizes else shard
    n_jets = np.array([s.n_jets for s in manifest.shards], np.int64)
    stop = np.minimum(start + unit_jets, n_jets[shard]) if len(shard) else start
    if unit_counts is None:
        return UnitTable(shard, start, stop, (stop - start).astype(np.float64), np.ones(len(shard)))
    expected = np.zeros(len(shard))
    max_weight = np.zeros(len(shard))
    first_unit = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    for index, entry in enumerate(manifest.shards):
        rows = unit_counts.get(entry.name)
        if rows is None or not len(rows):
            continue
        units, cells, counts = first_unit[index] + rows[:, 0], rows[:, 1], rows[:, 2]
        weight = np.ones(len(cells)) if cell_weights is None else cell_weights[cells]
        np.add.at(expected, units, counts * weight)
        np.maximum.at(max_weight, units, weight)
    return UnitTable(shard, start, stop, expected, max_weight)


@dataclass(frozen=True)
class RoundPlan:
    """One sampling round: the units read (in reading order) with their read probabilities."""

    units: np.ndarray
    read_probability: np.ndarray


def plan_round(table: UnitTable, scale: float, seed: int, epoch: int, round_: int, shuffle: bool) -> RoundPlan:
    """Units chosen for a round, identical on every rank and worker (seeded by seed, epoch, round)."""
    rng = np.random.default_rng([seed, epoch, round_, 0x5EED])
    probability = np.minimum(1.0, scale * table.max_weight)
    chosen = np.nonzero(rng.random(len(table)) < probability)[0]
    if shuffle:
        chosen = rng.permutation(chosen)
    return RoundPlan(chosen, probability[chosen])


def assign_slots(table: UnitTable, plan: RoundPlan, scale: float, num_slots: int) -> np.ndarray:
    """Slot of each planned unit: in reading order, each unit goes to the slot expecting the fewest jets
    so far, so slots get nearly equal shares (and equal batch counts waste little)."""
    expected = scale * table.expected[plan.units] / np.maximum(plan.read_probability, 1e-300)
    load = [(0.0, slot) for slot in range(num_slots)]
    heapq.heapify(load)
    slots = np.empty(len(plan.units), np.int64)
    for i, value in enumerate(expected):
        total, slot = heapq.heappop(load)
        slots[i] = slot
        heapq.heappush(load, (total + float(value), slot))
    return slots


def slot_quota(table: UnitTable, scale: float, batch_size: int, num_slots: int, seed: int, epoch: int,
               epoch_rounds: float = 1.0) -> int:
    """Batches every slot (rank × worker) yields this epoch: the whole batches expected from the poorest
    slot's share of the first round. Equal for all, so every rank yields the same number of batches;
    at most what each slot's own units are expected to give, so slots rarely need a second round (and,
    without weights, never: their jets stay disjoint)."""
    plan = plan_round(table, scale, seed, epoch, 0, shuffle=True)
    expected = scale * table.expected[plan.units] / np.maximum(plan.read_probability, 1e-300)
    per_slot = np.bincount(assign_slots(table, plan, scale, num_slots), weights=expected, minlength=num_slots)
    return int(per_slot.min() * epoch_rounds // batch_size)


def batches_before(consumed: int, worker: int, num_workers: int) -> int:
    """Of the first ``consumed`` batches of a rank, how many came from ``worker`` (round-robin order)."""
    return max(0, (consumed - worker + num_workers - 1) // num_workers)
