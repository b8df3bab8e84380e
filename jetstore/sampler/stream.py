"""Executing one slot's plan for one epoch: read its units ahead (:mod:`pipeline`), keep rows by weight,
pool them, and cut batches with the plan's class composition, assembled on the CPU threads.

The pools work on row identities and every random choice is seeded by (seed, epoch, round, unit) or (seed,
epoch, slot), so the stream depends only on the seed, the world size and the worker count. Resuming at
batch k replays the pools reading only the columns that decide which rows are kept, then reads the units
whose rows are still pooled in full, so the next batch is exactly the one that would have come.
"""

from __future__ import annotations

import collections
import concurrent.futures
import itertools
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from jetstore.errors import DatasetError
from jetstore.sampler import kernels
from jetstore.sampler.arena import Arena, Compact
from jetstore.sampler.batch import Allocator, BatchBuilder
from jetstore.sampler.pipeline import Executors, ReadSequence, UnitPipeline
from jetstore.sampler.pools import BucketPools, ClassPools, FifoPool, split
from jetstore.sampler.schemes import SlotPlan, UnitRead
from jetstore.sampler.units import UnitTable
from jetstore.stats.cells import CellRule
from jetstore.stats.split import Split
from jetstore.store.collection import ShardCatalog
from jetstore.store.layout import ENTRY, INPUT, Selection
from jetstore.store.table import JetTable

MOSTLY_KEPT = 0.25


@dataclass(frozen=True)
class StreamSpec:
    """What every slot needs (picklable, sent to DataLoader workers)."""

    catalog: ShardCatalog
    units: UnitTable
    rule: CellRule
    cell_weights: np.ndarray
    batch_size: int
    seed: int
    scale: float
    threads: int
    io_threads: int
    ahead: int
    window_jets: int
    split: Split = field(default_factory=Split)
    bucket: int = 0  # batches grouped by multiplicity and trimmed, at least this long (0: neither)


@dataclass
class PreparedUnit:
    """A read unit: the class of each kept row; with data, each kept row's row in ``compact``; with bucketing,
    each kept row's multiplicity."""

    classes: np.ndarray
    refs: np.ndarray | None
    compact: Compact | None
    remaining: int
    sizes: np.ndarray | None = None


class SlotStream:
    """Iterates the batches (dicts of arrays) of one slot for one epoch."""

    def __init__(self, spec: StreamSpec, builders: tuple[BatchBuilder, ...], plan: SlotPlan, epoch: int, slot: int,
                 skip: int = 0, empty: Allocator = np.empty, arena: Arena | None = None):
        """``builders``: the batch builder of every dataset of the catalog (their schemas may differ)."""
        self.spec, self.builders, self.plan, self.epoch, self.slot = spec, builders, plan, epoch, slot
        self.skip, self.empty = skip, empty
        self.arena = arena or Arena()
        stored = [source.columns.provenance() for source in spec.catalog.sources]
        self.light = tuple(_with_provenance(b.with_counts(b.resolver.needs(spec.rule.variables)), spec.split, p)
                           for b, p in zip(builders, stored, strict=True))
        self.full = tuple(_with_provenance(b.resolver.needs([*b.inputs, *spec.rule.variables]), spec.split, p)
                          for b, p in zip(builders, stored, strict=True))
        self.pipelines: list[UnitPipeline] = []
        self.units_per_batch: list[int] = []  # how many distinct units fed each batch (a measure of mixing)
        self.units_read = 0  # units that gave rows this epoch

    @property
    def bytes_read(self) -> int:
        return sum(p.bytes_fetched for p in self.pipelines)

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        if self.plan.quota == 0:
            return
        yield from self._batches(Executors.shared(self.spec.threads, self.spec.io_threads))

    # -- rows of one unit ------------------------------------------------------------------------------

    def _builder(self, read: UnitRead) -> BatchBuilder:
        return self.builders[int(self.spec.catalog.member[self.spec.units.shard[read.unit]])]

    def _kept(self, read: UnitRead, table: JetTable) -> tuple[np.ndarray, np.ndarray]:
        """Multiplicity and (sample, class) stratum of every row of a unit (deterministic in seed, epoch, round,
        unit)."""
        units, rule = self.spec.units, self.spec.rule
        resolver = self._builder(read).resolver
        selected = resolver.selection_mask(table)
        if self.spec.split.active:
            sources = self.spec.catalog.shards[int(units.shard[read.unit])].sources
            selected = selected & self.spec.split.mask(sources, table.jets[ENTRY], table.jets.get(INPUT))
        if not self.plan.weighted:
            return selected.astype(np.int64), np.zeros(table.n_jets, np.int64)
        values = {name: flat for name, (_, flat) in resolver.evaluate_flat(table, rule.variables).items()}
        cells = rule.cells(values, selected)
        weights = np.where(cells >= 0, self.spec.cell_weights[np.maximum(cells, 0)], 0.0) * units.factor[read.unit]
        start = np.random.default_rng([self.spec.seed, self.epoch, read.round, read.unit]).random()
        multiplicity = kernels.multiplicities(self.spec.scale * weights / read.probability, start)
        if read.part is not None:  # the slot keeps only some of the unit's kept rows
            position = np.cumsum(multiplicity) - multiplicity
            multiplicity[(position < read.part[0]) | (position >= read.part[1])] = 0
        classes = rule.class_of(cells)
        if units.n_classes == 1:  # expectations without stats: every jet in one class
            classes = np.minimum(classes, 0)
        return multiplicity, np.where(classes >= 0, classes + units.sample[read.unit] * units.n_classes, -1)

    def _kept_classes(self, read: UnitRead, table: JetTable) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`_kept`, with every kept row in class 0 unless batches follow the class composition."""
        multiplicity, classes = self._kept(read, table)
        if self.plan.fractions is None:
            classes = np.where(classes >= 0, 0, classes)
        return multiplicity, classes

    def _identify(self, _: int, read: UnitRead, table: JetTable) -> PreparedUnit:
        multiplicity, classes = self._kept_classes(read, table)
        rows = kernels.repeat_rows(multiplicity)
        return PreparedUnit(classes[rows], None, None, len(rows), self._sizes(read, table, rows))

    def _prepare(self, _: int, read: UnitRead, table: JetTable) -> PreparedUnit:
        """Kept rows with their data. A unit mostly kept is prepared whole (cheaper than gathering its kept
        rows first); a unit mostly dropped only for its kept rows (so the pool stays small)."""
        multiplicity, classes = self._kept_classes(read, table)
        rows = kernels.repeat_rows(multiplicity)
        distinct = np.nonzero(multiplicity)[0]
        builder, sample = self._builder(read), int(self.spec.units.sample[read.unit])
        sizes = self._sizes(read, table, rows)
        if len(distinct) >= MOSTLY_KEPT * table.n_jets:
            return PreparedUnit(classes[rows], rows, builder.prepare(table, sample), len(rows), sizes)
        refs = np.repeat(np.arange(len(distinct)), multiplicity[distinct])
        return PreparedUnit(classes[rows], refs, builder.prepare(table.take(distinct), sample), len(rows), sizes)

    def _sizes(self, read: UnitRead, table: JetTable, rows: np.ndarray) -> np.ndarray | None:
        """The multiplicity of each kept row (bucketing), or None."""
        sizes = self._builder(read).multiplicities(table)
        return None if sizes is None else sizes[rows]

    # -- batches ---------------------------------------------------------------------------------------

    def _pipeline(self, full: bool, executors: Executors) -> UnitPipeline:
        pipeline = UnitPipeline(self.spec.catalog, self.spec.units, self.full if full else self.light,
                                self._prepare if full else self._identify, executors, self.spec.ahead)
        self.pipelines.append(pipeline)
        return pipeline

    def _batches(self, executors: Executors) -> Iterator[dict[str, np.ndarray]]:
        spec, plan = self.spec, self.plan
        reads = ReadSequence(plan.reads())
        seed = _seed(spec.seed, self.epoch, self.slot)
        fractions = plan.fractions if plan.fractions is not None else np.ones(1)
        if plan.fractions is None and not plan.shuffle:
            pool = FifoPool()
        elif spec.bucket:  # a chunk of batches: half the shuffle window
            pool = BucketPools(fractions, seed, spec.window_jets // (2 * spec.batch_size))
        else:
            pool = ClassPools(fractions, seed)
        self.arena.reset()
        state = _State(pool, self.arena, executors.cpu.submit, len(spec.units),
                       " + ".join(source.url for source in spec.catalog.sources))
        if self.skip:
            light = self._pipeline(False, executors).run(_numbered(reads, 0))
            for emitted in range(self.skip):
                drawn = state.next_batch(light, spec.batch_size, self._wanted(emitted))
                if drawn is None:
                    return
                state.release(drawn)
            light.close()
            self._materialise(state, reads, executors)
        state.emitted = self.skip

        def wanted(in_flight: float) -> bool:  # read ahead only what the rest of the epoch may need
            if plan.quota is None:
                return True
            return in_flight + state.pool.rows < (plan.quota - state.emitted) * spec.batch_size

        full = self._pipeline(True, executors).run(_numbered(reads, state.next_sequence), wanted)
        assembled: collections.deque = collections.deque()
        self.arena.before_move = lambda: concurrent.futures.wait([*assembled, *state.copies.values()])
        try:
            yield from self._cut(state, full, assembled, executors)
        finally:  # left early or not, no job of this stream outlives it (the next epoch reuses the arena)
            full.close()
            _settle([*assembled, *state.copies.values()])

    def _cut(self, state: _State, full: Iterator[PreparedUnit], assembled: collections.deque,
             executors: Executors) -> Iterator[dict[str, np.ndarray]]:
        spec, plan = self.spec, self.plan
        while plan.quota is None or state.emitted < plan.quota:
            drawn = state.next_batch(full, spec.batch_size, self._wanted(state.emitted))
            if drawn is None:
                break
            rows = state.arena.rows(drawn)
            self.units_per_batch.append(len(np.unique(split(drawn)[0])))
            self.units_read = state.read
            assembled.append(executors.cpu.submit(_assemble, self.builders[0], state.arena.view, rows, self.empty,
                                                  state.copies_of(drawn)))
            state.release(drawn)
            state.emitted += 1
            while len(assembled) > executors.threads:
                yield assembled.popleft().result()
        while assembled:
            yield assembled.popleft().result()

    def _wanted(self, emitted: int) -> int:
        """Rows to hold before cutting a batch: a shuffle window of units, or what the epoch still needs."""
        window = self.spec.window_jets if self.plan.shuffle else 0
        if self.plan.quota is None:
            return window
        return min(window, (self.plan.quota - emitted) * self.spec.batch_size)

    def _materialise(self, state: _State, reads: ReadSequence, executors: Executors) -> None:
        """After a replay: read in full the units whose rows are still pooled."""
        waiting = sorted(state.units)
        pipeline = self._pipeline(True, executors)
        for sequence, unit in zip(waiting, pipeline.run((s, reads.get(s)) for s in waiting), strict=True):
            state.arena.add(sequence, unit.compact, unit.refs)


class _State:
    """The pooled rows of a slot, how many of each unit's rows remain, and (when reading in full) their
    prepared data."""

    def __init__(self, pool: ClassPools | FifoPool, arena: Arena, submit: Callable[..., Future], n_units: int,
                 url: str):
        self.pool, self.arena, self.submit = pool, arena, submit
        self.n_units, self.url = n_units, url
        self.barren = 0  # units read in a row that gave no row
        self.copies: dict[int, Future] = {}  # units whose data is being copied into the arena
        self.emitted = 0
        self.units: dict[int, int] = {}  # unit sequence → rows still pooled
        self.next_sequence = 0
        self.read = 0  # units that gave rows
        self.exhausted = False

    def next_batch(self, source: Iterator[PreparedUnit], size: int, wanted: int) -> np.ndarray | None:
        """The entries of the next batch, reading units from ``source`` until it can be cut with at least
        ``wanted`` rows pooled (None: no more batches)."""
        pool = self.pool
        if isinstance(pool, ClassPools):
            queued = pool.queued()
            if queued is not None:
                return queued
        counts = pool.next_counts(size, wanted) if isinstance(pool, ClassPools) else None
        while not self.exhausted and not self._ready(counts, size, wanted):
            unit = next(source, None)
            if unit is None:
                self.exhausted = True
                break
            self.barren = 0 if unit.remaining else self.barren + 1
            if self.barren > self.n_units:  # as many units as the data holds read, none kept: none ever will be
                raise DatasetError(f"{self.url}: no jet to sample: every unit read gives none (the config's selection "
                                   "keeps no jet, or none carries one of its classes)")
            if unit.remaining:
                self.read += 1
                self.units[self.next_sequence] = unit.remaining
                pool.add(self.next_sequence, unit.classes, unit.sizes)
                if unit.compact is not None:
                    placed = self.arena.reserve(self.next_sequence, unit.compact, unit.refs)
                    self.copies[self.next_sequence] = self.submit(self.arena.write, *placed)
            self.next_sequence += 1
        if isinstance(pool, ClassPools):
            return pool.draw(counts)
        drawn = pool.draw_first(size)
        return drawn if len(drawn) else None

    def _ready(self, counts: np.ndarray | None, size: int, wanted: int) -> bool:
        if counts is None:
            return self.pool.rows >= size
        return self.pool.ready(counts) and self.pool.rows >= wanted

    def copies_of(self, drawn: np.ndarray) -> list[Future]:
        """The arena copies a batch must wait for (those not finished yet)."""
        for sequence in [s for s, future in self.copies.items() if future.done()]:
            del self.copies[sequence]
        if not self.copies:
            return []
        return [self.copies[s] for s in np.unique(split(drawn)[0]).tolist() if s in self.copies]

    def release(self, drawn: np.ndarray) -> None:
        sequences = split(drawn)[0]
        first = int(sequences.min())
        counts = np.bincount(sequences - first)
        for offset in np.nonzero(counts)[0].tolist():
            sequence, count = first + offset, int(counts[offset])
            self.units[sequence] -= count
            if self.units[sequence] == 0:
                del self.units[sequence]
                if sequence in self.arena.units:
                    self.arena.remove(sequence)


def _settle(futures: list[Future]) -> None:
    """Cancel jobs not started and wait for the others to end, whatever their outcome."""
    for future in futures:
        future.cancel()
    concurrent.futures.wait(futures)


def _assemble(builder: BatchBuilder, view, rows: np.ndarray, empty: Allocator, copies: list[Future]):
    """CPU thread: wait for the arena copies of the batch's units, then assemble it."""
    for copy in copies:
        copy.result()
    return builder.assemble(view, rows, empty)


def _numbered(reads: ReadSequence, start: int) -> Iterator[tuple[int, UnitRead]]:
    for sequence in itertools.count(start):
        read = reads.get(sequence)
        if read is None:
            return
        yield sequence, read


def _seed(seed: int, epoch: int, slot: int) -> np.uint64:
    return np.uint64(np.random.default_rng([seed, epoch, slot, 0xB0B]).integers(1 << 63))


def _with_provenance(selection: Selection, split: Split, stored: tuple[str, ...]) -> Selection:
    """``selection`` plus the jets' provenance (entry number, piece) when a split decides per jet."""
    if not split.active:
        return selection
    return Selection(tuple(dict.fromkeys((*selection.jets, *stored))), selection.blocks)
