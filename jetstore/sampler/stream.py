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
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from jetstore.dataset.collection import ShardCatalog
from jetstore.errors import DatasetError
from jetstore.model.cells import CellRule
from jetstore.model.layout import ENTRY, INPUT, Selection
from jetstore.model.split import Split
from jetstore.model.table import JetTable
from jetstore.sampler import kernels
from jetstore.sampler.arena import Arena, PreparedBlock
from jetstore.sampler.batch import Allocator, BatchBuilder
from jetstore.sampler.pipeline import Executors, ReadSequence, UnitPipeline
from jetstore.sampler.pools import BucketPools, ClassPools, FifoPool, units_of
from jetstore.sampler.schemes import SlotPlan, UnitRead, shares
from jetstore.sampler.units import UnitTable

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
    """A read unit: the class of each kept row; with data, the prepared rows of its window (``block``); with
    bucketing, each kept row's multiplicity (``sizes``)."""

    classes: np.ndarray
    remaining: int
    block: PreparedBlock | None = None
    sizes: np.ndarray | None = None


class SlotStream:
    """Iterates the batches (dicts of arrays) of one slot for one epoch."""

    def __init__(self, spec: StreamSpec, builders: tuple[BatchBuilder, ...], plan: SlotPlan, epoch: int, slot: int,
                 skip: int = 0, memory: Callable[[], Allocator] = lambda: np.empty, arena: Arena | None = None):
        """``builders``: the batch builder of every dataset of the catalog (their schemas may differ); ``memory``:
        the allocator of each batch's arrays (called once per batch)."""
        self.spec, self.builders, self.plan, self.epoch, self.slot = spec, builders, plan, epoch, slot
        self.skip, self.memory = skip, memory
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

    # -- rows of a window of units -----------------------------------------------------------------------

    def _kept(self, reads: list[UnitRead], table: JetTable) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Multiplicity and (sample, class) stratum of every row of a window of units of one dataset (their rows
        one after the other in ``table``, unit k's at ``bounds[k]:bounds[k + 1]``), and the bounds; deterministic
        in seed, epoch, round and unit. Every kept row is in stratum 0 unless batches follow the composition."""
        units, rule, spec = self.spec.units, self.spec.rule, self.spec
        index = np.array([read.unit for read in reads], np.int64)
        sizes = units.stop[index] - units.start[index]
        bounds = np.concatenate([[0], np.cumsum(sizes)])
        unit_of_row = np.repeat(np.arange(len(reads)), sizes)
        resolver = self._builder(reads).resolver
        selected = resolver.selection_mask(table)
        if spec.split.active:
            selected &= self._split_mask(index, table, unit_of_row)
        if self.plan.weighted:
            values = {name: flat for name, (_, flat) in resolver.evaluate_flat(table, rule.variables).items()}
            cells = rule.cells(values, selected)
            scale = spec.scale * units.factor[index] / np.array([read.probability for read in reads])
            expected = np.where(cells >= 0, spec.cell_weights[np.maximum(cells, 0)], 0.0) * scale[unit_of_row]
            starts = kernels.unit_starts(spec.seed, self.epoch, np.array([read.round for read in reads]), index)
            multiplicity = kernels.multiplicities(expected, cells, bounds, starts)
            classes = rule.class_of(cells)
            if units.n_classes == 1:  # expectations without stats: every jet in one class
                classes = np.minimum(classes, 0)
            strata = np.where(classes >= 0, classes + (units.sample[index] * units.n_classes)[unit_of_row], -1)
        else:
            multiplicity, strata = selected.astype(np.int64), np.zeros(table.n_jets, np.int64)
        for k, read in enumerate(reads):
            mine = multiplicity[bounds[k]:bounds[k + 1]]
            if read.part is not None:  # the slot keeps only some of the unit's kept rows
                position = np.cumsum(mine) - mine
                mine[(position < read.part[0]) | (position >= read.part[1])] = 0
            if read.shares is not None:  # the slot keeps only its pieces of the unit (schemes/shares.py)
                mine[~shares.kept(read.shares, strata[bounds[k]:bounds[k + 1]])] = 0
        if self.plan.fractions is None:
            strata = np.where(strata >= 0, 0, strata)
        return multiplicity, strata, bounds

    def _split_mask(self, index: np.ndarray, table: JetTable, unit_of_row: np.ndarray) -> np.ndarray:
        """Which rows of a window are in the split's part (each shard names its own input files)."""
        shards = self.spec.units.shard[index][unit_of_row]
        inputs = table.jets.get(INPUT)
        mask = np.empty(table.n_jets, bool)
        for shard in np.unique(shards).tolist():
            rows = shards == shard
            sources = self.spec.catalog.shards[shard].sources
            mask[rows] = self.spec.split.mask(sources, table.jets[ENTRY][rows],
                                              None if inputs is None else inputs[rows])
        return mask

    def _identify(self, items: list[tuple[int, UnitRead]], table: JetTable) -> list[PreparedUnit]:
        reads = [read for _, read in items]
        multiplicity, strata, bounds = self._kept(reads, table)
        rows = kernels.repeat_rows(multiplicity)
        kept = _per_unit(multiplicity, bounds)
        sizes = self._sizes(self._builder(reads), table, rows, kept)
        return [PreparedUnit(classes, len(classes), None, n)
                for classes, n in zip(np.split(strata[rows], np.cumsum(kept)[:-1]), sizes, strict=True)]

    def _prepare(self, items: list[tuple[int, UnitRead]], table: JetTable) -> list[PreparedUnit]:
        """Kept rows with their data, prepared in one call for the window. A window mostly kept is prepared
        whole (cheaper than gathering its kept rows first); one mostly dropped only for its kept rows (so the
        arena stays small)."""
        reads = [read for _, read in items]
        multiplicity, strata, bounds = self._kept(reads, table)
        rows = kernels.repeat_rows(multiplicity)
        kept = _per_unit(multiplicity, bounds)
        distinct = np.nonzero(multiplicity)[0]
        builder = self._builder(reads)
        sample = int(self.spec.units.sample[reads[0].unit])
        if len(distinct) >= MOSTLY_KEPT * table.n_jets:
            compact, refs = builder.prepare(table, sample), rows
        else:
            place = np.zeros(table.n_jets, np.int64)
            place[distinct] = np.arange(len(distinct))
            compact, refs = builder.prepare(table.take(distinct), sample), place[rows]
        giving = kept > 0
        sequences = np.array([sequence for sequence, _ in items], np.int64)[giving]
        block = PreparedBlock(compact, sequences, refs, np.concatenate([[0], np.cumsum(kept[giving])]))
        classes = np.split(strata[rows], np.cumsum(kept)[:-1])
        sizes = self._sizes(builder, table, rows, kept)
        return [PreparedUnit(c, len(c), block if len(c) else None, n) for c, n in zip(classes, sizes, strict=True)]

    def _builder(self, reads: list[UnitRead]) -> BatchBuilder:
        """The batch builder of a window's dataset."""
        return self.builders[int(self.spec.catalog.member[self.spec.units.shard[reads[0].unit]])]

    @staticmethod
    def _sizes(builder: BatchBuilder, table: JetTable, rows: np.ndarray, kept: np.ndarray
               ) -> Sequence[np.ndarray | None]:
        """Per unit of a window: the multiplicity of each kept row (with bucketing), else None."""
        sizes = builder.multiplicities(table)
        if sizes is None:
            return [None] * len(kept)
        return np.split(sizes[rows], np.cumsum(kept)[:-1])

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
        pool: ClassPools | FifoPool
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
                state.release(*units_of(drawn))
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
            sequences, counts = units_of(drawn)
            self.units_per_batch.append(len(sequences))
            self.units_read = state.read
            assembled.append(executors.cpu.submit(_assemble, self.builders[0], state.arena.view, rows, self.memory(),
                                                  state.copies_of(sequences)))
            state.release(sequences, counts)
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
        waiting = np.nonzero(state.remaining > 0)[0].tolist()
        known = ((s, read) for s in waiting if (read := reads.get(s)) is not None)  # all read before the replay
        for unit in self._pipeline(True, executors).run(known):
            if unit.block is not None and not unit.block.placed:
                state.arena.add(unit.block)


class _State:
    """The pooled rows of a slot, how many of each unit's rows remain, and (when reading in full) their
    prepared data."""

    def __init__(self, pool: ClassPools | FifoPool, arena: Arena, submit: Callable[..., Future], n_units: int,
                 url: str):
        self.pool, self.arena, self.submit = pool, arena, submit
        self.n_units, self.url = n_units, url
        self.barren = 0  # units read in a row that gave no row
        self.copies: dict[int, Future] = {}  # arena blocks whose data is being copied in
        self.emitted = 0
        self.remaining = np.zeros(1024, np.int64)  # unit sequence → rows still pooled
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
                if self.next_sequence >= len(self.remaining):
                    self.remaining = np.concatenate([self.remaining, np.zeros_like(self.remaining)])
                self.remaining[self.next_sequence] = unit.remaining
                pool.add(self.next_sequence, unit.classes, unit.sizes)
                if unit.block is not None and not unit.block.placed:
                    placed = self.arena.reserve(unit.block)
                    self.copies[int(self.arena.block_of[self.next_sequence])] = self.submit(self.arena.write, *placed)
            self.next_sequence += 1
        if isinstance(pool, ClassPools):
            assert counts is not None  # a ClassPools always asks for counts
            return pool.draw(counts)
        drawn = pool.draw_first(size)
        return drawn if len(drawn) else None

    def _ready(self, counts: np.ndarray | None, size: int, wanted: int) -> bool:
        pool = self.pool
        if counts is None or not isinstance(pool, ClassPools):
            return pool.rows >= size
        return pool.ready(counts) and pool.rows >= wanted

    def copies_of(self, sequences: np.ndarray) -> list[Future]:
        """The arena copies a batch drawn from units ``sequences`` must wait for (those not finished yet)."""
        for block in [b for b, future in self.copies.items() if future.done()]:
            del self.copies[block]
        if not self.copies:
            return []
        blocks = np.unique(self.arena.block_of[sequences])
        return [self.copies[b] for b in blocks.tolist() if b in self.copies]

    def release(self, sequences: np.ndarray, counts: np.ndarray) -> None:
        """Count a batch's rows (``counts`` from each of units ``sequences``) as delivered; units with none left
        leave the arena."""
        self.remaining[sequences] -= counts
        done = sequences[self.remaining[sequences] == 0]
        if len(done):
            self.arena.remove(done)


def _per_unit(multiplicity: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """Kept rows of every unit of a window."""
    total = np.concatenate([[0], np.cumsum(multiplicity)])
    return total[bounds[1:]] - total[bounds[:-1]]


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
