"""Turning stored jets into ready model inputs: weaver-style groups ``[N, C, L]`` (``[N, C]`` unpadded),
``_label_`` (or custom float labels) and observers, with the numba kernels.

Two steps, so the shuffle buffer holds jets compactly (~1 kB/jet instead of ~5 kB padded): ``prepare``
evaluates the variables of a unit's kept jets into flat float32 arrays (:class:`Compact`); ``assemble``
standardises, clips and pads the rows of one batch, taken from several units, straight into the output.
With ``bucket``, a batch's groups are trimmed to its longest jet (each block its own length).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import awkward as ak
import numpy as np

from jetstore.config.variables import VariableResolver
from jetstore.config.weaver import InputGroup, TrainingConfig
from jetstore.errors import SchemaError
from jetstore.model.layout import Selection
from jetstore.model.table import JetTable, class_index
from jetstore.sampler import kernels
from jetstore.sampler.arena import ArenaView, Compact
from jetstore.schema import Schema

LABEL = "_label_"
SAMPLE = "_sample_"  # observer: the jet's sample (index into the dataset's ``sample_names``)
Allocator = Callable[[tuple[int, ...], np.dtype], np.ndarray]


@dataclass(frozen=True)
class VariableParams:
    """Standardisation of one variable as float32 scalars (weaver's fused kernels use float32)."""

    center: np.float32
    scale: np.float32
    low: np.float32
    high: np.float32
    pad_value: np.float32
    standardize: bool


class BatchBuilder:
    """Computes the configured inputs, labels and observers of jets."""

    def __init__(self, schema: Schema, config: TrainingConfig, centers: Mapping[str, tuple[float | None, float]],
                 observers: bool = False, bucket: int = 0):
        """``bucket``: trim every group with a length to the batch's longest jet, keeping at least ``bucket``
        positions (0: pad to the configured lengths)."""
        self.config, self.bucket = config, bucket
        self.resolver = VariableResolver(schema, config)
        self.params: dict[str, VariableParams] = {}
        for name, variable in config.variables.items():
            center, scale = centers.get(name, (variable.center, variable.scale))
            if center == "auto":
                raise SchemaError(f"{config.source}: no standardisation for '{name}'; run `jetstore stats`")
            self.params[name] = VariableParams(
                np.float32(center or 0.0), np.float32(scale), np.float32(variable.min), np.float32(variable.max),
                np.float32(variable.pad_value), center is not None)
        self.observers = observers
        self.observer_names = config.observers if observers else ()
        wanted = [*config.variables, *self.observer_names,
                  *(config.label_columns if config.label_type == "simple" else ())]
        self.variable_names = tuple(dict.fromkeys(wanted))
        custom_inputs = {n for e in config.custom_labels.values() for n in e.names}
        self.inputs = (*self.variable_names, *sorted(custom_inputs))  # every name the outputs read
        self.needs: Selection = self.resolver.needs(self.inputs)
        self.group_params = {g.name: self._stacked_params(g) for g in config.inputs}
        self.sorting = self._sorting_block() if bucket else None

    def _sorting_block(self) -> tuple[str, int]:
        """(block, length) of the longest group with a length: the multiplicity batches are grouped by."""
        groups = [(g, g.length) for g in self.config.inputs if g.length is not None]
        if not groups:
            raise SchemaError(f"{self.config.source}: bucket groups jets by multiplicity, but no input group has a "
                              "length")
        longest, length = max(groups, key=lambda pair: pair[1])
        blocks = self.resolver.needs([v.name for v in longest.variables], with_selection=False).blocks
        if len(blocks) != 1:
            raise SchemaError(f"{self.config.source}: inputs.{longest.name}: its variables read "
                              f"{len(blocks)} blocks; bucketing needs the one block its length counts")
        return next(iter(blocks)), length

    def with_counts(self, selection: Selection) -> Selection:
        """``selection`` and what reading the multiplicities takes (the sorting block's counts, with bucketing)."""
        if self.sorting is None or self.sorting[0] in selection.blocks:
            return selection
        return Selection(selection.jets, {**selection.blocks, self.sorting[0]: ()})

    def multiplicities(self, table: JetTable) -> np.ndarray | None:
        """Per jet of ``table``: its entries in the sorting block, at most the group's length (None without
        bucketing)."""
        if self.sorting is None:
            return None
        block, length = self.sorting
        return np.minimum(table.blocks[block].counts, length).astype(np.int64)

    def _stacked_params(self, group: InputGroup) -> tuple[np.ndarray, ...]:
        params = [self.params[v.name] for v in group.variables]
        return tuple(np.array([getattr(p, field) for p in params], dtype)
                     for field, dtype in (("center", np.float32), ("scale", np.float32), ("low", np.float32),
                                          ("high", np.float32), ("standardize", np.bool_),
                                          ("pad_value", np.float32)))

    def prepare(self, table: JetTable, sample: int = 0) -> Compact:
        """Variables of every jet of ``table`` (selection already applied), unpadded; ``sample``: the sample the
        jets belong to (an observer)."""
        values = self.resolver.evaluate_flat(table, self.variable_names)
        n = table.n_jets
        offsets_of = {name: block.offsets for name, block in table.blocks.items()}
        groups: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}
        for group in self.config.inputs:
            names = [v.name for v in group.variables]
            if group.length is None:
                for name in names:
                    if values[name][0] is not None:
                        raise SchemaError(f"input group '{group.name}' has no length but '{name}' has several "
                                          "values per jet")
                groups[group.name] = (_by_row([values[name][1] for name in names]), None)
                continue
            blocks = {values[name][0] for name in names}
            if len(blocks) != 1:
                raise SchemaError(f"{self.config.source}: inputs.{group.name}: all variables need the same "
                                  "number of entries per jet")
            block = blocks.pop()
            offsets = offsets_of[block] if block is not None else np.arange(n + 1, dtype=np.int64)
            groups[group.name] = (_by_row([values[name][1] for name in names]), offsets)
        extras: dict[str, np.ndarray] = {}
        if self.config.label_type == "simple":
            extras[LABEL] = class_index([values[c][1] for c in self.config.label_columns])
        if self.config.custom_labels:  # regression targets (weaver's custom labels, or labels.targets)
            targets = self.resolver.expression_values(table, self.config.custom_labels, "labels")
            for name, result in targets.items():
                extras[name] = np.asarray(ak.to_numpy(result) if isinstance(result, ak.Array) else result,
                                          dtype=np.float32)
        for name in self.observer_names:
            extras[name] = values[name][1]
        if self.observers:
            extras[SAMPLE] = np.full(n, sample, np.int64)
        return Compact(n, groups, extras)

    def assemble(self, view: ArenaView, rows: np.ndarray, empty: Allocator = np.empty) -> dict[str, np.ndarray]:
        """The batch of arena ``rows``: standardised, clipped, padded groups, labels and observers, in arrays
        from ``empty``."""
        n = len(rows)
        out: dict[str, np.ndarray] = {}
        for group in self.config.inputs:
            centers, scales, lows, highs, standardize, pads = self.group_params[group.name]
            arrays = view.groups[group.name]
            if group.length is None:
                result = empty((n, len(group.variables)), np.dtype(np.float32))
                kernels.scalar_rows(arrays.values, rows, centers, scales, lows, highs, standardize, result)
            else:
                assert arrays.counts is not None  # a group with a length
                length = self._length(group.length, arrays.counts, rows)
                result = empty((n, len(group.variables), length), np.dtype(np.float32))
                kernels.pad_rows(arrays.values, arrays.starts, arrays.counts, rows, centers, scales, lows, highs,
                                 standardize, pads, group.pad_mode == "wrap", result)
            out[group.name] = result
        for name, values in view.extras.items():
            result = empty((n,), values.dtype)
            kernels.gather(values, rows, result)
            out[name] = result
        return out

    def _length(self, length: int, counts: np.ndarray, rows: np.ndarray) -> int:
        """A group's length in a batch: its configured one, or with bucketing the batch's longest jet (at least
        ``bucket``, at most the configured length)."""
        if not self.bucket:
            return length
        longest = int(counts[rows].max()) if len(rows) else 0
        return min(length, max(self.bucket, longest))


def _by_row(columns: list[np.ndarray]) -> np.ndarray:
    """Variables side by side, ``[n, C]`` float32 (the arena's row-major layout), written row after row by a
    kernel (a column at a time, numpy's strided writes took 5x as long)."""
    out = np.empty((len(columns[0]) if columns else 0, len(columns)), np.float32)
    if columns:
        kernels.side_by_side(tuple(_read_only(column) for column in columns), out)
    return out


def _read_only(column: np.ndarray) -> np.ndarray:
    """A C-contiguous float32 read-only view: the kernel indexes its tuple of columns at run time, which numba
    allows only when every column has the same type (decoded arrays are writable, others may be read-only)."""
    view = np.ascontiguousarray(column, np.float32).view()
    view.flags.writeable = False
    return view
