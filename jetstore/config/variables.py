"""Config variables over stored jets: dataset columns plus weaver ``new_variables``, after ``selection``.

Resolves which stored columns a set of variables needs (so only those are read), then evaluates the
derived ones with the safe evaluator on awkward arrays, as weaver-core does on its ROOT tables.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

import awkward as ak
import numpy as np

from jetstore.config.weaver import TrainingConfig
from jetstore.errors import ExpressionError, SchemaError
from jetstore.model.layout import Selection
from jetstore.model.table import JetTable
from jetstore.schema import Expression, Schema

MAX_CHAIN = 100  # new_variables defined through at most this many others (evaluation recurses along a chain)


class VariableResolver:
    """Maps config variable names onto a dataset schema. A new variable that refers to itself, directly or
    through others, or through a chain of more than :data:`MAX_CHAIN`, is a :class:`SchemaError` naming the
    chain (a stored column of the same name is read, as weaver-core reads a branch: no cycle)."""

    def __init__(self, schema: Schema, config: TrainingConfig):
        self.schema, self.config = schema, config
        self.jet_columns = {c.name for c in schema.jet_columns}
        self.block_of = {f.name: b.name for b in schema.blocks for f in b.features}
        self._check_chains()

    def _check_chains(self) -> None:
        """Refuse cyclic or over-long chains of new variables (walked without recursion)."""
        derived = {name: expression for name, expression in self.config.new_variables.items()
                   if name not in self.jet_columns and name not in self.block_of}
        depth: dict[str, int] = {}  # finished: the longest chain below each name
        for start in derived:
            path, stack = [start], [iter(sorted(derived[start].names & derived.keys()))]
            while stack:
                child = next(stack[-1], None)
                if child is None:
                    name = path.pop()
                    stack.pop()
                    depth[name] = 1 + max((depth[c] for c in derived[name].names & derived.keys()), default=0)
                    continue
                if child in depth:
                    continue
                if child in path:
                    cycle = " → ".join([*path[path.index(child):], child])
                    raise SchemaError(f"{self.config.source}: new_variables.{child} refers to itself ({cycle})")
                if len(path) >= MAX_CHAIN:
                    raise SchemaError(f"{self.config.source}: new_variables.{start} is defined through a chain of "
                                      f"more than {MAX_CHAIN} new variables")
                path.append(child)
                stack.append(iter(sorted(derived[child].names & derived.keys())))

    def needs(self, names: Iterable[str], with_selection: bool = True) -> Selection:
        """The stored columns needed to compute ``names`` (and the selection)."""
        wanted = set(names)
        if with_selection and self.config.selection is not None:
            wanted |= self.config.selection.names
        stored: set[str] = set()
        seen: set[str] = set()
        stack = list(wanted)
        while stack:
            name = stack.pop()
            if name in seen:
                continue
            seen.add(name)
            if name in self.jet_columns or name in self.block_of:
                stored.add(name)
            elif name in self.config.new_variables:
                stack.extend(self.config.new_variables[name].names)
            else:
                raise SchemaError(self._unknown(name))
        features: dict[str, list[str]] = {}
        for name in sorted(stored):
            if name in self.block_of:
                features.setdefault(self.block_of[name], []).append(name)
        return Selection(tuple(sorted(stored & self.jet_columns)), {b: tuple(f) for b, f in features.items()})

    def evaluate(self, table: JetTable, names: Iterable[str], with_selection: bool = True) -> dict[str, object]:
        """Arrays for ``names`` over the jets of ``table`` (only those passing the selection, if asked)."""
        values = self._columns(table)
        mask = self._mask(values) if with_selection else None
        out = {}
        for name in names:
            array = self._resolve(name, values)
            out[name] = array if mask is None else array[mask]
        return out

    def expression_values(self, table: JetTable, expressions: dict[str, Expression], where: str) -> dict[str, object]:
        """Evaluate expressions over ``table`` (e.g. custom labels), resolving new variables they use."""
        columns = self._columns(table)
        return {name: self._value(f"{where}.{name}", e, columns) for name, e in expressions.items()}

    def selection_mask(self, table: JetTable) -> np.ndarray:
        """Per jet: does it pass the config's selection (all True without one)."""
        if self.config.selection is None:
            return np.ones(table.n_jets, dtype=bool)
        flat = FlatValues(self, table)
        value = flat.expression(self.config.selection, "selection")
        if value is not None and value[0] is None:
            return np.asarray(value[1], dtype=bool)
        mask = self._mask(self._columns(table))
        assert mask is not None  # there is a selection
        return mask

    def evaluate_flat(self, table: JetTable, names: Iterable[str]) -> dict[str, tuple[str | None, np.ndarray]]:
        """``name → (block, flat values)`` (block None: one value per jet) without building awkward arrays
        where possible: stored columns directly, and element-wise numpy expressions of columns of one
        block computed on the flat values; anything else through awkward."""
        flat = FlatValues(self, table)
        out = {}
        for name in names:
            result = flat.get(name)
            if result is None:
                value = self.evaluate(table, [name], with_selection=False)[name]
                result = _as_flat(value, table, name)
            out[name] = result
        return out

    def _columns(self, table: JetTable) -> dict[str, object]:
        values: dict[str, object] = dict(table.jets)
        for block in table.blocks.values():
            offsets = block.offsets
            for name, flat in block.features.items():
                values[name] = _jagged(offsets, flat)
        return values

    def _mask(self, values: dict[str, object]) -> np.ndarray | None:
        if self.config.selection is None:
            return None
        return np.asarray(ak.to_numpy(self._value("selection", self.config.selection, values)), dtype=bool)

    def _resolve(self, name: str, values: dict[str, object]) -> Any:
        if name not in values:
            if name not in self.config.new_variables:
                raise SchemaError(self._unknown(name))
            expression = self.config.new_variables[name]
            for dependency in expression.names:
                self._resolve(dependency, values)
            values[name] = self._value(f"new_variables.{name}", expression, values)
        return values[name]

    def _value(self, where: str, expression, values: dict[str, object]) -> object:
        for dependency in expression.names:
            self._resolve(dependency, values)
        try:
            return expression.evaluate(values)
        except ExpressionError as exc:
            raise SchemaError(f"{self.config.source}: {where}: {exc}") from None

    def _unknown(self, name: str) -> str:
        candidates = sorted(self.jet_columns | set(self.block_of) | set(self.config.new_variables))
        close = difflib.get_close_matches(name, candidates, n=3)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        return (f"{self.config.source}: variable '{name}' is neither a column of dataset schema "
                f"'{self.schema.name}' nor a new_variable{hint}")


def _jagged(offsets: np.ndarray, flat: np.ndarray) -> ak.Array:
    layout = ak.contents.ListOffsetArray(ak.index.Index64(offsets), ak.contents.NumpyArray(flat))
    return ak.Array(layout)


class FlatValues:
    """Per-jet and per-node values as flat numpy arrays, computing numpy-only expressions on them."""

    def __init__(self, resolver: VariableResolver, table: JetTable):
        self.resolver, self.table = resolver, table
        self.cache: dict[str, tuple[str | None, np.ndarray] | None] = {}

    def get(self, name: str) -> tuple[str | None, np.ndarray] | None:
        if name not in self.cache:
            self.cache[name] = self._compute(name)
        return self.cache[name]

    def _compute(self, name: str) -> tuple[str | None, np.ndarray] | None:
        table, resolver = self.table, self.resolver
        if name in table.jets:
            return None, np.asarray(table.jets[name])
        block = resolver.block_of.get(name)
        if block is not None and block in table.blocks:
            return block, table.blocks[block].features[name]
        expression = resolver.config.new_variables.get(name)
        return None if expression is None else self.expression(expression, f"new_variables.{name}")

    def expression(self, expression, where: str) -> tuple[str | None, np.ndarray] | None:
        if not expression.element_wise:
            return None
        found = {n: self.get(n) for n in expression.names}
        inputs = {n: v for n, v in found.items() if v is not None}
        if len(inputs) < len(found):
            return None
        blocks = {block for block, _ in inputs.values() if block is not None}
        if len(blocks) > 1 or (blocks and any(block is None for block, _ in inputs.values())):
            return None  # mixing levels needs awkward broadcasting
        try:
            value = expression.evaluate({n: v for n, (_, v) in inputs.items()}, flat=True)
        except ExpressionError as exc:
            raise SchemaError(f"{self.resolver.config.source}: {where}: {exc}") from None
        return (blocks.pop() if blocks else None), np.asarray(value)


def _as_flat(value, table: JetTable, name: str) -> tuple[str | None, np.ndarray]:
    if not isinstance(value, ak.Array) or value.ndim == 1:
        return None, np.asarray(ak.to_numpy(value) if isinstance(value, ak.Array) else value)
    counts = np.asarray(ak.to_numpy(ak.num(value, axis=1)))
    for block_name, block in table.blocks.items():
        if np.array_equal(block.counts, counts):
            return block_name, np.asarray(ak.to_numpy(ak.flatten(value, axis=1)))
    raise SchemaError(f"variable '{name}' has a per-jet length that matches no stored block")


def config_names(config: TrainingConfig) -> tuple[str, ...]:
    """Every name a config reads: inputs, labels (simple or custom), observers, reweighting variables."""
    names = [*config.variables, *config.label_columns, *config.observers, *config.monitor_variables]
    names += [n for expression in config.custom_labels.values() for n in expression.names]
    if config.weights is not None:
        names += [config.weights.x_var, config.weights.y_var, *config.weights.classes]
    return tuple(dict.fromkeys(names))


def check_agreement(collection, config: TrainingConfig) -> None:
    """Every dataset of a collection stores what the config reads, with the same dtypes; else one line naming
    the dataset and the column."""
    first: dict[str, tuple[str, np.dtype]] = {}
    for member in collection:
        dataset = member.dataset
        try:
            needs = VariableResolver(dataset.schema, config).needs(config_names(config))
        except SchemaError as exc:
            raise SchemaError(f"{dataset.url}: {exc}") from None
        dtypes = dataset.manifest.columns.dtypes
        for name in (*needs.jets, *(f for features in needs.blocks.values() for f in features)):
            url, dtype = first.setdefault(name, (dataset.url, dtypes[name]))
            if dtype != dtypes[name]:
                raise SchemaError(f"{dataset.url}: column '{name}' is stored as {dtypes[name]}, but as {dtype} in "
                                  f"{url}; datasets trained together must agree on what the config reads")
