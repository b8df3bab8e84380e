"""Jets numbered across datasets and shards: entry ranges as per-shard spans, and unit-aligned partitions.

Entry ``i`` of a read is the ``i``-th jet of the datasets read one after the other, each in manifest order (the
order :class:`~jetstore.store.collection.Collection` numbers shards in), as ``uproot.concatenate`` numbers the
entries of several files.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Span:
    """Jets ``[start, stop)`` of shard ``shard`` (its position in the read's shard catalog)."""

    shard: int
    start: int
    stop: int


@dataclass(frozen=True)
class Entries:
    """Where every shard's jets start among all the jets read (``starts[-1]``: how many), and every shard's unit."""

    starts: np.ndarray
    units: np.ndarray

    @classmethod
    def of(cls, jets_per_shard: list[int], units: list[int]) -> Entries:
        starts = np.zeros(len(jets_per_shard) + 1, np.int64)
        np.cumsum(jets_per_shard, out=starts[1:])
        return cls(starts, np.asarray(units, np.int64))

    @property
    def total(self) -> int:
        return int(self.starts[-1])

    def bounded(self, entry_start: int | None, entry_stop: int | None) -> tuple[int, int]:
        """``[entry_start, entry_stop)`` as uproot takes it: None for the ends, negative from the end, clipped."""
        start, stop, _ = slice(entry_start, entry_stop).indices(self.total)
        return start, max(start, stop)

    def spans(self, start: int, stop: int) -> list[Span]:
        """The per-shard pieces of entries ``[start, stop)``, in order."""
        first = int(np.searchsorted(self.starts, start, side="right")) - 1
        out = []
        for shard in range(max(first, 0), len(self.starts) - 1):
            base = int(self.starts[shard])
            if base >= stop:
                break
            lo, hi = max(start, base) - base, min(stop, int(self.starts[shard + 1])) - base
            if hi > lo:
                out.append(Span(shard, lo, hi))
        return out

    def partitions(self, step: int | None) -> list[Span]:
        """Every shard cut into spans of whole units of about ``step`` jets (None: a shard each); a span never
        crosses a shard, so a partition is one read of its shard."""
        out = []
        for shard in range(len(self.starts) - 1):
            n, unit = int(self.starts[shard + 1] - self.starts[shard]), int(self.units[shard])
            size = n if step is None else max(unit, -(-step // unit) * unit)
            out += [Span(shard, lo, min(n, lo + size)) for lo in range(0, n, max(size, 1))]
        return out
