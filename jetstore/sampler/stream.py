"""The batches of one slot (rank × DataLoader worker) in one epoch.

The slot reads its units in windows of ``window_units``; the kept rows of a window, plus the rows left
over from the previous window, form the shuffle pool, which is permuted and cut into batches (the tail
carries over). Everything is seeded by (seed, epoch, round, unit) or (seed, epoch, slot, window), so the
stream depends only on the seed, the world size and the worker count.

Resuming at batch k replays the windows before it at identity level (reading only the columns that
decide which rows are kept) and materialises from the window holding batch k on, so the next batch is
exactly the one that would have come.
"""

from __future__ import annotations

import collections
import concurrent.futures
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from jetstore.config.variables import VariableResolver
from jetstore.config.weaver import WeightsSpec
from jetstore.errors import DatasetError
from jetstore.sampler import kernels
from jetstore.sampler.batch import BatchBuilder, Compact
from jetstore.sampler.plan import UnitTable, assign_slots, plan_round
from jetstore.sampler.world import World
from jetstore.stats.weights import cell_ids
from jetstore.store.dataset import ShardSource
from jetstore.store.format import ShardReader
from jetstore.store.manifest import ShardEntry
from jetstore.store.table import JetTable

MAX_EMPTY_ROUNDS = 64


@dataclass(frozen=True)
class StreamSpec:
    """What every slot needs (picklable, sent to DataLoader workers)."""

    source: ShardSource
    shards: tuple[ShardEntry, ...]
    units: UnitTable
    cell_weights: np.ndarray
    weights: WeightsSpec | None
    scale: float          # per sampling round: at most max_repeats copies of any jet per round
    epoch_rounds: float   # rounds an epoch spans (jets_per_epoch beyond max_repeats copies per round)
    batch_size: int
    seed: int
    training: bool
    window_units: int
    prefetch: int


@dataclass
class Pool:
    """Rows waiting to be batched. ``ids``: the identity ``(unit, row)`` of every delivered copy; once
    materialised, ``data`` holds each distinct jet once and ``refs`` points every copy at its row there,
    so a jet up-sampled many times costs a few bytes per copy, not a copy of its data."""

    ids: np.ndarray
    refs: np.ndarray | None
    data: Compact | None

    @staticmethod
    def empty() -> Pool:
        return Pool(np.zeros((0, 2), np.int64), np.zeros(0, np.int64), EMPTY)

    @staticmethod
    def identities(ids: np.ndarray) -> Pool:
        return Pool(ids, None, None)

    def extend(self, other: Pool) -> Pool:
        return Pool.concat([self, other])

    @staticmethod
    def concat(pools: list[Pool]) -> Pool:
        ids = np.concatenate([p.ids for p in pools])
        if any(p.data is None for p in pools):
            return Pool.identities(ids)
        filled = [p for p in pools if p.data is not EMPTY]
        if not filled:
            return Pool(ids, np.zeros(0, np.int64), EMPTY)
        starts = np.cumsum([0] + [p.data.n for p in filled[:-1]])
        refs = np.concatenate([p.refs + start for p, start in zip(filled, starts, strict=True)])
        return Pool(ids, refs, Compact.concat([p.data for p in filled]))

    def take(self, rows: np.ndarray) -> Pool:
        if self.data is None:
            return Pool.identities(self.ids[rows])
        if self.data is EMPTY or not len(rows):
            return Pool(self.ids[rows], np.zeros(0, np.int64), EMPTY)
        distinct, refs = np.unique(self.refs[rows], return_inverse=True)
        return Pool(self.ids[rows], refs.astype(np.int64), self.data.take(distinct))


EMPTY = Compact(0, {}, {})


class ShardReaders:
    """Open shard readers (least recently used closed first), one lock each; counts bytes read."""

    def __init__(self, source: ShardSource, shards: tuple[ShardEntry, ...], capacity: int = 8):
        self.source, self.shards, self.capacity = source, shards, capacity
        self.open: collections.OrderedDict[int, tuple[ShardReader, threading.Lock]] = collections.OrderedDict()
        self.lock = threading.Lock()
        self.closed_bytes = 0

    def read(self, shard: int, needs, start: int, stop: int) -> JetTable:
        with self.lock:
            if shard in self.open:
                self.open.move_to_end(shard)
            else:
                self.open[shard] = (self.source.reader(self.shards[shard]), threading.Lock())
                while len(self.open) > self.capacity:
                    _, (oldest, oldest_lock) = self.open.popitem(last=False)
                    with oldest_lock:
                        self.closed_bytes += oldest.bytes_read
                        oldest.close()
            reader, lock = self.open[shard]
        with lock:
            return self.source.read_from(reader, self.shards[shard], needs.jet_columns, needs.features, start, stop)

    @property
    def bytes_read(self) -> int:
        with self.lock:
            return self.closed_bytes + sum(r.bytes_read for r, _ in self.open.values())

    def close(self) -> None:
        with self.lock:
            for reader, _ in self.open.values():
                self.closed_bytes += reader.bytes_read
                reader.close()
            self.open.clear()


class SlotStream:
    """Iterates the batches (dicts of numpy arrays) of one slot for one epoch."""

    def __init__(self, spec: StreamSpec, builder: BatchBuilder, world: World, epoch: int, quota: int | None,
                 skip: int = 0):
        self.spec, self.builder, self.world, self.epoch = spec, builder, world, epoch
        self.quota, self.skip = quota, skip
        self.resolver: VariableResolver = builder.resolver
        weights = spec.weights
        weight_names = () if weights is None else (weights.x_var, weights.y_var, *weights.classes)
        self.light_needs = self.resolver.needs(weight_names)
        self.full_needs = self.resolver.needs([*builder.inputs, *weight_names])
        self.readers = ShardReaders(spec.source, spec.shards)
        self.jets_delivered = 0

    @property
    def bytes_read(self) -> int:
        return self.readers.bytes_read

    # -- the units this slot reads ---------------------------------------------------------------------

    def _units(self) -> Iterator[tuple[int, int, float]]:
        """(round, unit, read probability) in this slot's reading order."""
        spec, world = self.spec, self.world
        if not spec.training:
            for unit in range(world.slot, len(spec.units), world.num_slots):
                yield 0, unit, 1.0
            return
        empty, round_ = 0, 0
        while True:
            plan = plan_round(spec.units, spec.scale, spec.seed, self.epoch, round_, shuffle=True)
            mine = np.nonzero(assign_slots(spec.units, plan, spec.scale, world.num_slots) == world.slot)[0]
            empty = 0 if len(mine) else empty + 1
            if empty > MAX_EMPTY_ROUNDS:
                raise DatasetError("no jets can be sampled: every unit has weight 0 (check the selection, "
                                   "the reweighting classes and bins)")
            for index in mine:
                yield round_, int(plan.units[index]), float(plan.read_probability[index])
            round_ += 1

    def _windows(self) -> Iterator[tuple[int, list[tuple[int, int, float]]]]:
        """Consecutive units in windows of ``window_units``; a window never spans two rounds, so a later
        round is read only when the first did not fill the quota."""
        window: list[tuple[int, int, float]] = []
        index = 0
        for item in self._units():
            if window and item[0] != window[-1][0]:
                yield index, window
                window, index = [], index + 1
            window.append(item)
            if len(window) == self.spec.window_units:
                yield index, window
                window, index = [], index + 1
        if window:
            yield index, window

    # -- one unit --------------------------------------------------------------------------------------

    def _read(self, unit: int, light: bool) -> JetTable:
        units = self.spec.units
        return self.readers.read(int(units.shard[unit]), self.light_needs if light else self.full_needs,
                                 int(units.start[unit]), int(units.stop[unit]))

    def _kept_rows(self, table: JetTable, round_: int, unit: int, read_probability: float) -> np.ndarray:
        """Delivered rows of a unit (repeated by multiplicity), deterministic in (seed, epoch, round, unit)."""
        selected = self.resolver.selection_mask(table)
        if not self.spec.training:
            return np.nonzero(selected)[0]
        weights = self.spec.weights
        if weights is None:
            row_weight = selected.astype(np.float64)
        else:
            values = self.resolver.evaluate_flat(table, (weights.x_var, weights.y_var, *weights.classes))
            cells = cell_ids(weights, values[weights.x_var][1], values[weights.y_var][1],
                             {c: values[c][1] for c in weights.classes}, selected)
            row_weight = np.where(cells >= 0, self.spec.cell_weights[np.maximum(cells, 0)], 0.0)
        uniform = np.random.default_rng([self.spec.seed, self.epoch, round_, unit]).random(table.n_jets)
        return kernels.repeat_rows(kernels.multiplicities(self.spec.scale * row_weight / read_probability, uniform))

    def _unit_pool(self, item: tuple[int, int, float], materialise: bool) -> Pool:
        round_, unit, probability = item
        table = self._read(unit, light=not materialise)
        rows = self._kept_rows(table, round_, unit, probability)
        ids = np.stack([np.full(len(rows), unit, np.int64), rows], axis=1)
        if not materialise:
            return Pool.identities(ids)
        distinct, refs = np.unique(rows, return_inverse=True)  # rows are sorted: repeats are adjacent
        return Pool(ids, refs.astype(np.int64), self.builder.prepare(table.take(distinct)))

    def _materialise(self, ids: np.ndarray) -> Pool:
        """Data for rows known only by identity (a pool rebuilt when resuming), in ``ids`` order."""
        if not len(ids):
            return Pool.empty()
        parts, positions = [], []
        for unit in dict.fromkeys(ids[:, 0].tolist()):
            where = np.nonzero(ids[:, 0] == unit)[0]
            parts.append(self.builder.prepare(self._read(unit, light=False).take(ids[where, 1])))
            positions.append(where)
        order = np.empty(len(ids), np.int64)
        order[np.concatenate(positions)] = np.arange(len(ids))
        return Pool(ids, order, Compact.concat(parts))

    def _fresh_windows(self, windows) -> Iterator[tuple[int, Pool]]:
        """Materialised pools of the remaining windows, units read ``prefetch`` ahead in threads."""
        items = ((index, item) for index, window in windows for item in window)
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, self.spec.prefetch)) as executor:
            pending: collections.deque = collections.deque()

            def fill() -> None:
                while len(pending) < max(1, self.spec.prefetch):
                    following = next(items, None)
                    if following is None:
                        return
                    pending.append((following[0], executor.submit(self._unit_pool, following[1], True)))

            fill()
            current, parts = None, []
            while pending:
                index, future = pending.popleft()
                fill()
                if current is not None and index != current:
                    yield current, Pool.concat(parts)
                    parts = []
                current = index
                parts.append(future.result())
            if current is not None:
                yield current, Pool.concat(parts)

    # -- batches ---------------------------------------------------------------------------------------

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        try:
            yield from self._batches()
        finally:
            self.readers.close()

    def _batches(self) -> Iterator[dict[str, np.ndarray]]:
        size = self.spec.batch_size
        windows = self._windows()
        emitted, carry = 0, Pool.empty()
        while emitted < self.skip:  # replay at identity level
            entry = next(windows, None)
            if entry is None:
                return
            index, window = entry
            pool = Pool.concat([Pool.identities(carry.ids), *(self._unit_pool(item, False) for item in window)])
            order = self._order(pool, index)
            n_batches = len(order) // size
            if emitted + n_batches <= self.skip:
                carry, emitted = pool.take(order[n_batches * size:]), emitted + n_batches
                if self._done(emitted):
                    return
                continue
            pool = self._materialise(pool.ids)
            emitted, carry, finished = yield from self._emit(pool, index, emitted, self.skip - emitted)
            if finished:
                return
        if carry.data is None:
            carry = self._materialise(carry.ids)
        for index, fresh in self._fresh_windows(windows):
            emitted, carry, finished = yield from self._emit(carry.extend(fresh), index, emitted, 0)
            if finished:
                return
        if not self.spec.training and len(carry.ids):
            yield self._batch(carry, np.arange(len(carry.ids)))

    def _emit(self, pool: Pool, index: int, emitted: int, first: int):
        """Cut a window's pool into batches (the first ``first`` were delivered before a resume)."""
        size = self.spec.batch_size
        order = self._order(pool, index)
        n_batches = len(order) // size
        for b in range(n_batches):
            if self._done(emitted):
                return emitted, pool, True
            if b >= first:
                yield self._batch(pool, order[b * size:(b + 1) * size])
            emitted += 1
        return emitted, pool.take(order[n_batches * size:]), self._done(emitted)

    def _order(self, pool: Pool, window: int) -> np.ndarray:
        if not self.spec.training:
            return np.arange(len(pool.ids), dtype=np.int64)
        seed = np.random.default_rng([self.spec.seed, self.epoch, self.world.slot, window]).integers(1 << 62)
        return kernels.permutation(len(pool.ids), int(seed))

    def _done(self, emitted: int) -> bool:
        return self.quota is not None and emitted >= self.quota

    def _batch(self, pool: Pool, rows: np.ndarray) -> dict[str, np.ndarray]:
        self.jets_delivered += len(rows)
        return self.builder.assemble(pool.data, np.ascontiguousarray(pool.refs[rows], dtype=np.int64))
