"""The prepared rows of a slot's pooled units, in one set of growing arrays per input group and extra, so
a batch drawn from many units is assembled with one kernel call per group (the GIL held for microseconds,
not once per unit). Units come in blocks (the window of units prepared together, :class:`PreparedBlock`),
appended as they arrive and dropped once the rows of all their units are delivered; when full, the live
blocks are copied into fresh arrays (batches being assembled keep reading the old ones).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from jetstore.sampler import kernels
from jetstore.sampler.pools import ROW_BITS

MIN_CAPACITY = 1 << 14


@dataclass(frozen=True)
class Compact:
    """Prepared jets: per input group values ``[n_values, C]`` (a node's C variables side by side) with per-jet
    ``offsets`` (None for groups without a length, whose values are ``[n_jets, C]``), plus per-jet label and
    observer arrays."""

    n: int
    groups: dict[str, tuple[np.ndarray, np.ndarray | None]]
    extras: dict[str, np.ndarray]


@dataclass(frozen=True)
class GroupArrays:
    """One input group: values ``[capacity, C]`` (row-major: a jet's values are one stretch of memory, so
    batches of random rows are gathered with few cache misses) and, for groups with a length, per row the
    start and count of its values (None for one value per jet, value row = row)."""

    values: np.ndarray
    starts: np.ndarray | None = None
    counts: np.ndarray | None = None


@dataclass(frozen=True)
class ArenaView:
    """The arrays a batch is assembled from (captured when the batch is cut)."""

    groups: dict[str, GroupArrays]
    extras: dict[str, np.ndarray]


@dataclass(eq=False)
class PreparedBlock:
    """The prepared rows of a window of units (one :class:`Compact`), and for each of its units that gives rows
    (``sequences``) the row in ``compact`` of each of its kept rows: ``refs[bounds[k]:bounds[k + 1]]``."""

    compact: Compact
    sequences: np.ndarray
    refs: np.ndarray
    bounds: np.ndarray
    placed: bool = False  # reserved in the arena


@dataclass
class _Block:
    row: int                                  # first arena row
    rows: int
    ref: int                                  # first entry in the reference table
    refs: int
    sequences: np.ndarray                     # its units
    live: int                                 # units whose rows are not all delivered yet
    values: dict[str, tuple[int, int]] = field(default_factory=dict)  # jagged group → (first value, values)


class Arena:
    """Prepared rows of the windows a slot has pooled, addressed by pool entry (unit sequence, kept row)."""

    def __init__(self, rows: int = MIN_CAPACITY):
        self.initial_rows = rows  # expected rows held at once: the first arrays get room for them
        self.view: ArenaView | None = None
        self.rows_used = self.refs_used = self.row_capacity = 0
        self.refs = np.zeros(0, np.int64)            # kept row of a unit → arena row
        self.values_used: dict[str, int] = {}
        self.reset()
        self.before_move: Callable[[], object] = lambda: None  # waits for the batches and copies using the arrays

    def reset(self) -> None:
        """Forget every block, keeping the arrays (an arena serves one epoch after another)."""
        self.blocks: dict[int, _Block] = {}
        self.rows_used = self.refs_used = 0
        self.values_used = dict.fromkeys(self.values_used, 0)
        self.ref_start = np.zeros(1024, np.int64)    # unit sequence → its first entry in ``refs``
        self.block_of = np.full(1024, -1, np.int64)  # unit sequence → its block
        self.next_block = 0

    def add(self, block: PreparedBlock) -> None:
        """Append a block's prepared rows (its units' references usable at once)."""
        self.write(*self.reserve(block))

    def reserve(self, block: PreparedBlock) -> tuple[ArenaView, _Block, Compact]:
        """Place a block and its units' references; :meth:`write` then copies its data, on any thread, before a
        batch reads it."""
        compact, refs = block.compact, block.refs
        sizes = {name: int(offsets[-1]) for name, (_, offsets) in compact.groups.items() if offsets is not None}
        if self.view is None or not self._fits(compact.n, sizes, len(refs)):
            self._make_room(compact, compact.n, sizes, len(refs))
        placed = _Block(self.rows_used, compact.n, self.refs_used, len(refs), block.sequences, len(block.sequences))
        block.placed = True
        for name, size in sizes.items():
            placed.values[name] = (self.values_used[name], size)
            self.values_used[name] += size
        self.refs[self.refs_used:self.refs_used + len(refs)] = placed.row + refs
        last = int(block.sequences.max(initial=-1))
        if last >= len(self.ref_start):
            grow = max(last + 1, 2 * len(self.ref_start)) - len(self.ref_start)
            self.ref_start = np.concatenate([self.ref_start, np.zeros(grow, np.int64)])
            self.block_of = np.concatenate([self.block_of, np.full(grow, -1, np.int64)])
        self.ref_start[block.sequences] = self.refs_used + block.bounds[:-1]
        self.block_of[block.sequences] = self.next_block
        self.blocks[self.next_block] = placed
        self.next_block += 1
        self.refs_used += len(refs)
        self.rows_used += compact.n
        assert self.view is not None  # made by _make_room
        return self.view, placed, compact

    @staticmethod
    def write(view: ArenaView, block: _Block, compact: Compact) -> None:
        """Copy a reserved block's data into its place."""
        row, end = block.row, block.row + block.rows
        for name, (values, offsets) in compact.groups.items():
            group = view.groups[name]
            if offsets is None:
                group.values[row:end] = values
                continue
            first, size = block.values[name]
            assert group.starts is not None and group.counts is not None  # a group with a length
            group.values[first:first + size] = values
            group.starts[row:end] = first + offsets[:-1]
            group.counts[row:end] = np.diff(offsets)
        for name, values in compact.extras.items():
            view.extras[name][row:end] = values

    def remove(self, sequences: np.ndarray) -> None:
        """Units whose rows were all delivered: a block none of whose units has rows left is forgotten (its space
        is reused when the arena is next rebuilt)."""
        numbers = self.block_of[sequences[sequences < len(self.block_of)]]
        blocks, done = np.unique(numbers[numbers >= 0], return_counts=True)
        for number, count in zip(blocks.tolist(), done.tolist(), strict=True):
            block = self.blocks[number]
            block.live -= count
            if block.live <= 0:
                del self.blocks[number]

    def rows(self, entries: np.ndarray) -> np.ndarray:
        """Arena rows of pool entries."""
        return kernels.translate(entries, ROW_BITS, self.ref_start, self.refs)

    def _fits(self, rows: int, sizes: dict[str, int], refs: int) -> bool:
        assert self.view is not None
        if self.rows_used + rows > self.row_capacity or self.refs_used + refs > len(self.refs):
            return False
        return all(self.values_used[name] + size <= len(self.view.groups[name].values)
                   for name, size in sizes.items())

    def _make_room(self, like: Compact, rows: int, sizes: dict[str, int], refs: int) -> None:
        """Move the live blocks to the front of the arrays when that frees enough room (after the batches
        still reading them are done); else copy them into larger arrays."""
        self.before_move()  # copies still writing the live blocks must end before these are moved or copied
        live = sorted(self.blocks.values(), key=lambda block: block.row)
        needed_rows = rows + sum(b.rows for b in live)
        needed_refs = refs + sum(b.refs for b in live)
        needed = {name: size + sum(b.values[name][1] for b in live) for name, size in sizes.items()}
        if self.view is not None and needed_rows <= self.row_capacity // 2 and needed_refs <= len(self.refs) // 2 \
                and all(needed[name] <= len(self.view.groups[name].values) // 2 for name in needed):
            self._move(live, self.view, self.refs)
        else:
            self._reallocate(like, rows, sizes, refs)

    def _reallocate(self, like: Compact, rows: int, sizes: dict[str, int], refs: int) -> None:
        """Fresh arrays with room for twice the live blocks plus a newcomer of the given size; the live
        blocks are copied over (batches being assembled keep reading the old arrays)."""
        old, live = self.view, sorted(self.blocks.values(), key=lambda block: block.row)
        if old is None:  # the first block: room for the expected rows at its values per row
            scale = max(1.0, self.initial_rows / max(rows, 1))
            rows, refs = int(rows * scale), int(refs * scale)
            sizes = {name: int(size * scale) for name, size in sizes.items()}
        rows += sum(b.rows for b in live)
        refs += sum(b.refs for b in live)
        values = {name: size + sum(b.values[name][1] for b in live) for name, size in sizes.items()}
        room = {"rows": max(MIN_CAPACITY, 2 * rows), "refs": max(MIN_CAPACITY, 2 * refs)}
        groups = {}
        for name, (array, offsets) in like.groups.items():
            if offsets is None:
                groups[name] = GroupArrays(np.empty((room["rows"], array.shape[1]), np.float32))
            else:
                groups[name] = GroupArrays(np.empty((max(MIN_CAPACITY, 2 * values[name]), array.shape[1]), np.float32),
                                           np.zeros(room["rows"], np.int64), np.zeros(room["rows"], np.int64))
        self.view = ArenaView(groups, {name: np.empty(room["rows"], a.dtype) for name, a in like.extras.items()})
        self.row_capacity = room["rows"]
        old_refs, self.refs = self.refs, np.empty(room["refs"], np.int64)
        self.values_used = dict.fromkeys(sizes, 0)
        if old is not None:
            self._move(live, old, old_refs)

    def _move(self, live: list[_Block], old: ArenaView, old_refs: np.ndarray) -> None:
        """Copy the live blocks (in arena order) from ``old`` to the front of the current arrays."""
        self.rows_used = self.refs_used = 0
        self.values_used = dict.fromkeys(self.values_used, 0)
        view = self.view
        assert view is not None
        groups = view.groups
        for block in live:
            row, end = self.rows_used, self.rows_used + block.rows
            for name, group in groups.items():
                source = old.groups[name]
                if group.starts is None:
                    group.values[row:end] = source.values[block.row:block.row + block.rows]
                    continue
                first, size = block.values[name]
                assert group.counts is not None and source.starts is not None and source.counts is not None
                target = self.values_used[name]
                group.values[target:target + size] = source.values[first:first + size]
                group.starts[row:end] = source.starts[block.row:block.row + block.rows] - first + target
                group.counts[row:end] = source.counts[block.row:block.row + block.rows]
                block.values[name] = (target, size)
                self.values_used[name] = target + size
            for name, array in view.extras.items():
                array[row:end] = old.extras[name][block.row:block.row + block.rows]
            self.refs[self.refs_used:self.refs_used + block.refs] = old_refs[block.ref:block.ref + block.refs] \
                - block.row + row
            self.ref_start[block.sequences] += self.refs_used - block.ref
            block.row, block.ref = row, self.refs_used
            self.refs_used += block.refs
            self.rows_used = end
