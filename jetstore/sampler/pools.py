"""Rows waiting to be batched, by identity: an entry is ``(unit sequence number << 32) | kept row``.

:class:`ClassPools` keeps one shuffle buffer per class and draws each batch's rows of a class uniformly at
random from it (swap-remove, O(rows drawn)); :class:`FifoPool` hands rows out in arrival order. Both depend
only on identities, so a resumed stream replays them without reading the data.
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


class ClassPools:
    """One random-draw buffer per class, and the class composition of successive batches."""

    def __init__(self, fractions: np.ndarray, seed: int | np.integer):
        self.fractions = np.asarray(fractions, np.float64)
        n = len(self.fractions)
        self.pools = [np.empty(1024, np.int64) for _ in range(n)]
        self.sizes = np.zeros(n, np.int64)
        self.deficits = np.zeros(n)
        self.state = np.uint64(seed)

    def add(self, sequence: int, classes: np.ndarray) -> None:
        """Kept rows ``0..len(classes)-1`` of unit ``sequence``, with their classes (-1: not delivered)."""
        for c in np.unique(classes):
            if c < 0:
                continue
            new = entries(sequence, np.nonzero(classes == c)[0])
            size = int(self.sizes[c])
            if size + len(new) > len(self.pools[c]):
                grown = np.empty(max(2 * len(self.pools[c]), size + len(new)), np.int64)
                grown[:size] = self.pools[c][:size]
                self.pools[c] = grown
            self.pools[c][size:size + len(new)] = new
            self.sizes[c] += len(new)

    def next_counts(self, batch: int) -> np.ndarray:
        """Rows of every class the next batch needs (advances the composition)."""
        return kernels.composition(self.fractions, self.deficits, batch)

    def ready(self, counts: np.ndarray) -> bool:
        return bool((self.sizes >= counts).all())

    def draw(self, counts: np.ndarray) -> np.ndarray:
        """Take the rows of one batch (shuffled)."""
        parts = []
        for c, n in enumerate(counts.tolist()):
            if n:
                drawn, size, state = kernels.draw(self.pools[c], self.sizes[c], n, self.state)
                self.sizes[c], self.state = size, np.uint64(state)
                parts.append(drawn)
        rows = np.concatenate(parts) if parts else np.zeros(0, np.int64)
        order, state = kernels.permutation(len(rows), self.state)
        self.state = np.uint64(state)
        return rows[order]

    @property
    def rows(self) -> int:
        return int(self.sizes.sum())


class FifoPool:
    """Rows in arrival order (evaluation: no shuffling, no classes)."""

    def __init__(self):
        self.queue: collections.deque[np.ndarray] = collections.deque()
        self.rows = 0

    def add(self, sequence: int, classes: np.ndarray) -> None:
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
