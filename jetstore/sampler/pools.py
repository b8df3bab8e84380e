"""Rows waiting to be batched, by identity: an entry is ``(unit sequence number << 32) | kept row``.

:class:`ClassPools` keeps one shuffle buffer per class and draws each batch's rows of a class uniformly at
random from it (swap-remove, O(rows drawn)); :class:`BucketPools` draws many batches' rows at once and groups
them by multiplicity; :class:`FifoPool` hands rows out in arrival order. All depend only on identities (and
the multiplicities, read with them), so a resumed stream replays them without reading the rest of the data.
"""

from __future__ import annotations

import collections

import numpy as np

from jetstore.sampler import kernels

ROW_BITS = 32
ROW_MASK = (1 << ROW_BITS) - 1


def entries(sequence: int, rows: np.ndarray) -> np.ndarray:
    return (np.int64(sequence) << ROW_BITS) | rows.astype(np.int64)


def split(drawn: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(unit sequence numbers, kept rows) of drawn entries."""
    return drawn >> ROW_BITS, drawn & ROW_MASK


def units_of(drawn: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The units (sequence numbers, ascending) drawn entries come from, and how many entries from each."""
    sequences = drawn >> ROW_BITS
    first = int(sequences.min()) if len(sequences) else 0  # counts span the batch's units, not the epoch's
    counts = np.bincount(sequences - first)
    units = np.flatnonzero(counts)
    return units + first, counts[units]


class ClassPools:
    """One random-draw buffer per class, and the class composition of successive batches."""

    def __init__(self, fractions: np.ndarray, seed: int | np.integer):
        self.fractions = np.asarray(fractions, np.float64)
        n = len(self.fractions)
        self.pools = [np.empty(1024, np.int64) for _ in range(n)]
        self.sizes = np.zeros(n, np.int64)
        self.deficits = np.zeros(n)
        self.state = np.uint64(seed)

    def add(self, sequence: int, classes: np.ndarray, sizes: np.ndarray | None = None) -> None:
        """Kept rows ``0..len(classes)-1`` of unit ``sequence``, with their classes (-1: not delivered) and
        multiplicities (used by :class:`BucketPools`)."""
        rows, ends = kernels.by_class(classes, len(self.pools))
        start = 0
        for c, end in enumerate(ends.tolist()):
            if end > start:
                self._append(c, entries(sequence, rows[start:end]))
            start = end

    def _append(self, c: int, new: np.ndarray) -> None:
        """Put entries in class ``c``'s buffer (grown when full)."""
        size = int(self.sizes[c])
        if size + len(new) > len(self.pools[c]):
            grown = np.empty(max(2 * len(self.pools[c]), size + len(new)), np.int64)
            grown[:size] = self.pools[c][:size]
            self.pools[c] = grown
        self.pools[c][size:size + len(new)] = new
        self.sizes[c] += len(new)

    def queued(self) -> np.ndarray | None:
        """A batch cut before (None: the next one is drawn from the buffers)."""
        return None

    def next_counts(self, batch: int, wanted: int) -> np.ndarray:
        """Rows of every class the next draw needs (advances the composition); ``wanted``: the rows held before
        a batch is cut (the shuffle window, or what the epoch still needs)."""
        return kernels.composition(self.fractions, self.deficits, batch)

    def ready(self, counts: np.ndarray) -> bool:
        return bool((self.sizes >= counts).all())

    def draw(self, counts: np.ndarray) -> np.ndarray | None:
        """Take the rows of one batch (shuffled); None when the buffers cannot give them."""
        if not self.ready(counts):
            return None
        return self._shuffled(np.concatenate([self._take(c, n) for c, n in enumerate(counts.tolist())]))

    def _take(self, c: int, n: int) -> np.ndarray:
        """``n`` rows of class ``c``, uniformly at random."""
        drawn, size, state = kernels.draw(self.pools[c], self.sizes[c], n, self.state)
        self.sizes[c], self.state = size, np.uint64(state)
        return drawn

    def _shuffled(self, rows: np.ndarray) -> np.ndarray:
        order, state = kernels.permutation(len(rows), self.state)
        self.state = np.uint64(state)
        return rows[order]

    @property
    def rows(self) -> int:
        return int(self.sizes.sum())


class BucketPools(ClassPools):
    """Class buffers whose batches are cut ``chunk`` at a time from rows drawn at random, each class's rows
    sorted by multiplicity and dealt in that order, so the k-th batch takes every class's k-th slice (jets of
    similar multiplicity, each batch the class composition of :class:`ClassPools`); the batches are handed out
    in random order. Which rows are delivered does not depend on their multiplicity: a chunk is a uniform draw,
    and a chunk cut short by the epoch's end loses a random choice of its batches."""

    def __init__(self, fractions: np.ndarray, seed: int | np.integer, chunk: int):
        super().__init__(fractions, seed)
        self.chunk = max(1, chunk)
        self.multiplicities: dict[int, np.ndarray] = {}  # unit sequence → multiplicity of each kept row
        self.pooled: dict[int, int] = {}  # unit sequence → its rows still in the buffers
        self.planned = np.zeros((0, len(self.fractions)), np.int64)  # per batch of the next draw: rows per class
        self.cut: collections.deque[np.ndarray] = collections.deque()

    def add(self, sequence: int, classes: np.ndarray, sizes: np.ndarray | None = None) -> None:
        super().add(sequence, classes)
        pooled = int((classes >= 0).sum())
        if pooled:
            assert sizes is not None  # the stream gives the multiplicities when it buckets
            self.multiplicities[sequence], self.pooled[sequence] = sizes, pooled

    def queued(self) -> np.ndarray | None:
        return self.cut.popleft() if self.cut else None

    @property
    def rows(self) -> int:
        """Rows held: in the buffers and in batches cut but not handed out."""
        return int(self.sizes.sum()) + sum(len(batch) for batch in self.cut)

    def next_counts(self, batch: int, wanted: int) -> np.ndarray:
        """Rows of every class the next ``chunk`` batches need (fewer when ``wanted`` rows hold fewer)."""
        batches = max(1, min(self.chunk, wanted // batch))
        self.planned = np.stack([kernels.composition(self.fractions, self.deficits, batch) for _ in range(batches)])
        return self.planned.sum(axis=0)

    def draw(self, counts: np.ndarray) -> np.ndarray | None:
        """Cut the planned batches (as many as the buffers can fill, in order) and take one of them."""
        fits = np.asarray((np.cumsum(self.planned, axis=0) <= self.sizes).all(axis=1))
        plan = self.planned[:int(np.argmin(fits)) if not fits.all() else len(fits)]
        if not len(plan):
            return None
        ends = np.cumsum(plan, axis=0)
        slices = []
        for c in range(plan.shape[1]):
            rows = self._take(c, int(ends[-1, c]))
            rows = rows[np.argsort(self._multiplicity(rows), kind="stable")]
            slices.append(np.split(rows, ends[:-1, c]))
        batches = [self._shuffled(np.concatenate(parts)) for parts in zip(*slices, strict=True)]
        order, state = kernels.permutation(len(batches), self.state)
        self.state = np.uint64(state)
        self.cut.extend(batches[i] for i in order.tolist())
        return self.cut.popleft()

    def _multiplicity(self, drawn: np.ndarray) -> np.ndarray:
        """The multiplicity of each drawn entry (looked up unit by unit; a unit none of whose rows are left in the
        buffers is forgotten)."""
        sequences, rows = split(drawn)
        units, inverse = np.unique(sequences, return_inverse=True)
        order = np.argsort(inverse, kind="stable")
        bounds = np.searchsorted(inverse[order], np.arange(len(units) + 1))
        out = np.empty(len(drawn), np.int64)
        for k, sequence in enumerate(units.tolist()):
            where = order[bounds[k]:bounds[k + 1]]
            out[where] = self.multiplicities[sequence][rows[where]]
            self.pooled[sequence] -= len(where)
            if not self.pooled[sequence]:
                del self.multiplicities[sequence], self.pooled[sequence]
        return out


class FifoPool:
    """Rows in arrival order (evaluation: no shuffling, no classes)."""

    def __init__(self):
        self.queue: collections.deque[np.ndarray] = collections.deque()
        self.rows = 0

    def add(self, sequence: int, classes: np.ndarray, sizes: np.ndarray | None = None) -> None:
        if len(classes):
            self.queue.append(entries(sequence, np.arange(len(classes))))
            self.rows += len(classes)

    def draw_first(self, n: int) -> np.ndarray:
        parts, needed = [], min(n, self.rows)
        while needed:
            head = self.queue[0]
            take = head[:needed]
            parts.append(take)
            if len(take) == len(head):
                self.queue.popleft()
            else:
                self.queue[0] = head[needed:]
            needed -= len(take)
            self.rows -= len(take)
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)
