"""The prepared rows of a slot's pooled units, in one set of growing arrays per input group and extra, so
a batch drawn from many units is assembled with one kernel call per group (the GIL held for microseconds,
not once per unit). Units are appended as they arrive and dropped once their rows are all delivered; when
full, the live units are copied into fresh arrays (batches being assembled keep reading the old ones).
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
    """Prepared jets: per input group flat values ``[C, n_values]`` with per-jet ``offsets`` (None for
    groups without a length, whose values are ``[C, n_jets]``), plus per-jet label and observer arrays."""

    n: int
    groups: dict[str, tuple[np.ndarray, np.ndarray | None]]
    extras: dict[str, np.ndarray]


@dataclass(frozen=True)
class GroupArrays:
    """One input group: values ``[C, capacity]`` and, for groups with a length, per row the start and
    count of its values (None for one value per jet, column = row)."""

    values: np.ndarray
    starts: np.ndarray | None = None
    counts: np.ndarray | None = None


@dataclass(frozen=True)
class ArenaView:
    """The arrays a batch is assembled from (captured when the batch is cut)."""

    groups: dict[str, GroupArrays]
    extras: dict[str, np.ndarray]


@dataclass
class _Unit:
    row: int                                  # first arena row
    rows: int
    ref: int                                  # first entry in the reference table
    refs: int
    values: dict[str, tuple[int, int]] = field(default_factory=dict)  # jagged group → (first value, values)


class Arena:
    """Prepared rows of the units a slot has pooled, addressed by pool entry (unit sequence, kept row)."""

    def __init__(self, rows: int = MIN_CAPACITY):
        self.initial_rows = rows  # expected rows held at once: the first arrays get room for them
        self.view: ArenaView | None = None
        self.rows_used = self.refs_used = self.row_capacity = 0
        self.refs = np.zeros(0, np.int64)            # kept row of a unit → arena row
        self.values_used: dict[str, int] = {}
        self.reset()
        self.before_move: Callable[[], None] = lambda: None  # waits for the batches and copies using the arrays

    def reset(self) -> None:
        """Forget every unit, keeping the arrays (an arena serves one epoch after another)."""
        self.units: dict[int, _Unit] = {}
        self.rows_used = self.refs_used = 0
        self.values_used = dict.fromkeys(self.values_used, 0)
        self.ref_start = np.zeros(1024, np.int64)    # unit sequence → its first entry in ``refs``

    def add(self, sequence: int, compact: Compact, refs: np.ndarray) -> None:
        """Append a unit's prepared rows; ``refs`` maps each of its kept rows to one of them."""
        self.write(*self.reserve(sequence, compact, refs))

    def reserve(self, sequence: int, compact: Compact, refs: np.ndarray) -> tuple[ArenaView, _Unit, Compact]:
        """Place a unit (its references are usable at once); :meth:`write` then copies its data, on any
        thread, before a batch reads it."""
        sizes = {name: int(offsets[-1]) for name, (_, offsets) in compact.groups.items() if offsets is not None}
        if self.view is None or not self._fits(compact.n, sizes, len(refs)):
            self._make_room(compact, compact.n, sizes, len(refs))
        unit = _Unit(self.rows_used, compact.n, self.refs_used, len(refs))
        for name, size in sizes.items():
            unit.values[name] = (self.values_used[name], size)
            self.values_used[name] += size
        self.refs[self.refs_used:self.refs_used + len(refs)] = unit.row + refs
        if sequence >= len(self.ref_start):
            self.ref_start = np.concatenate([self.ref_start, np.zeros(sequence + 1, np.int64)])
        self.ref_start[sequence] = self.refs_used
        self.refs_used += len(refs)
        self.rows_used += compact.n
        self.units[sequence] = unit
        return self.view, unit, compact

    @staticmethod
    def write(view: ArenaView, unit: _Unit, compact: Compact) -> None:
        """Copy a reserved unit's data into its place."""
        row, end = unit.row, unit.row + unit.rows
        for name, (values, offsets) in compact.groups.items():
            group = view.groups[name]
            if offsets is None:
                group.values[:, row:end] = values
                continue
            first, size = unit.values[name]
            group.values[:, first:first + size] = values
            group.starts[row:end] = first + offsets[:-1]
            group.counts[row:end] = np.diff(offsets)
        for name, values in compact.extras.items():
            view.extras[name][row:end] = values

    def remove(self, sequence: int) -> None:
        """Forget a unit whose rows were all delivered (its space is reused when the arena is next rebuilt)."""
        del self.units[sequence]

    def rows(self, entries: np.ndarray) -> np.ndarray:
        """Arena rows of pool entries."""
        return kernels.translate(entries, ROW_BITS, self.ref_start, self.refs)

    def _fits(self, rows: int, sizes: dict[str, int], refs: int) -> bool:
        if self.rows_used + rows > self.row_capacity or self.refs_used + refs > len(self.refs):
            return False
        return all(self.values_used[name] + size <= self.view.groups[name].values.shape[1]
                   for name, size in sizes.items())

    def _make_room(self, like: Compact, rows: int, sizes: dict[str, int], refs: int) -> None:
        """Move the live units to the front of the arrays when that frees enough room (after the batches
        still reading them are done); else copy them into larger arrays."""
        self.before_move()  # copies still writing the live units must end before these are moved or copied
        live = sorted(self.units.items(), key=lambda item: item[1].row)
        needed_rows = rows + sum(u.rows for _, u in live)
        needed_refs = refs + sum(u.refs for _, u in live)
        needed = {name: size + sum(u.values[name][1] for _, u in live) for name, size in sizes.items()}
        if self.view is not None and needed_rows <= self.row_capacity // 2 and needed_refs <= len(self.refs) // 2 \
                and all(needed[name] <= self.view.groups[name].values.shape[1] // 2 for name in needed):
            self._move(live, self.view, self.refs)
        else:
            self._reallocate(like, rows, sizes, refs)

    def _reallocate(self, like: Compact, rows: int, sizes: dict[str, int], refs: int) -> None:
        """Fresh arrays with room for twice the live units plus a newcomer of the given size; the live
        units are copied over (batches being assembled keep reading the old arrays)."""
        old, live = self.view, sorted(self.units.items(), key=lambda item: item[1].row)
        if old is None:  # the first unit: room for the expected rows at its values per row
            scale = max(1.0, self.initial_rows / max(rows, 1))
            rows, refs = int(rows * scale), int(refs * scale)
            sizes = {name: int(size * scale) for name, size in sizes.items()}
        rows += sum(u.rows for _, u in live)
        refs += sum(u.refs for _, u in live)
        values = {name: size + sum(u.values[name][1] for _, u in live) for name, size in sizes.items()}
        room = {"rows": max(MIN_CAPACITY, 2 * rows), "refs": max(MIN_CAPACITY, 2 * refs)}
        groups = {}
        for name, (array, offsets) in like.groups.items():
            if offsets is None:
                groups[name] = GroupArrays(np.empty((array.shape[0], room["rows"]), np.float32))
            else:
                groups[name] = GroupArrays(np.empty((array.shape[0], max(MIN_CAPACITY, 2 * values[name])), np.float32),
                                           np.zeros(room["rows"], np.int64), np.zeros(room["rows"], np.int64))
        self.view = ArenaView(groups, {name: np.empty(room["rows"], a.dtype) for name, a in like.extras.items()})
        self.row_capacity = room["rows"]
        old_refs, self.refs = self.refs, np.empty(room["refs"], np.int64)
        self.values_used = dict.fromkeys(sizes, 0)
        if old is not None:
            self._move(live, old, old_refs)

    def _move(self, live: list[tuple[int, _Unit]], old: ArenaView, old_refs: np.ndarray) -> None:
        """Copy the live units (in arena order) from ``old`` to the front of the current arrays."""
        self.rows_used = self.refs_used = 0
        self.values_used = dict.fromkeys(self.values_used, 0)
        groups = self.view.groups
        for sequence, unit in live:
            row, end = self.rows_used, self.rows_used + unit.rows
            for name, group in groups.items():
                source = old.groups[name]
                if group.starts is None:
                    group.values[:, row:end] = source.values[:, unit.row:unit.row + unit.rows]
                    continue
                first, size = unit.values[name]
                target = self.values_used[name]
                group.values[:, target:target + size] = source.values[:, first:first + size]
                group.starts[row:end] = source.starts[unit.row:unit.row + unit.rows] - first + target
                group.counts[row:end] = source.counts[unit.row:unit.row + unit.rows]
                unit.values[name] = (target, size)
                self.values_used[name] = target + size
            for name, array in self.view.extras.items():
                array[row:end] = old.extras[name][unit.row:unit.row + unit.rows]
            moved = old_refs[unit.ref:unit.ref + unit.refs] - unit.row + row
            self.refs[self.refs_used:self.refs_used + unit.refs] = moved
            self.ref_start[sequence] = self.refs_used
            unit.row, unit.ref = row, self.refs_used
            self.refs_used += unit.refs
            self.rows_used = end
