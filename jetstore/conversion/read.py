"""Reading jet libraries of any input kind (:mod:`jetstore.conversion.inputs`): validate an input against the
schema, then read entry ranges in bounded chunks into :class:`JetTable` pieces (selection applied, derived
columns computed, dtypes checked)."""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import awkward as ak
import numpy as np

from jetstore.conversion import inputs
from jetstore.conversion.events import branch_kind, explode
from jetstore.conversion.inputs import BranchType, InputFile, InputKind
from jetstore.conversion.inputs.base import describe, file_size
from jetstore.errors import ExpressionError, InputError, TaskFailure
from jetstore.model.layout import ENTRY
from jetstore.model.table import BlockData, JetTable, offsets_of
from jetstore.schema import Column, Schema
from jetstore.schema.model import JET_INDEX, feature_dtype


@dataclass(frozen=True)
class InputInfo:
    """An input file that passed validation: its kind, entry count, identity (size and content identity), and
    the storage dtype of every column."""

    url: str
    kind: str
    entries: int
    size: int
    identity: str
    dtypes: dict[str, str]


def open_input(url: str, kind: InputKind, schema: Schema, options: Mapping[str, Any]) -> InputFile:
    """Open ``url`` as ``kind`` for ``schema`` (a kind with trees needs the schema to name one)."""
    if kind.needs_tree and schema.tree is None:
        raise InputError(url, f"is {kind.noun}; the schema must name its 'tree'")
    return kind.open(url, schema.tree, options)


def inspect_task(url: str, schema: Schema, options: Mapping[str, Any]) -> InputInfo | TaskFailure:
    """Dask task: :func:`inspect_input`, returning a bad input as a :class:`TaskFailure`."""
    try:
        return inspect_input(url, schema, options)
    except InputError as exc:
        return TaskFailure(url, exc.reason)


def inspect_input(url: str, schema: Schema, options: Mapping[str, Any]) -> InputInfo:
    """Validate that ``url`` holds the schema's branches with usable types (its kind told by its content)."""
    kind = inputs.detect(url, options, schema.source)
    with open_input(url, kind, schema, options) as handle:
        types = dict(handle.branches())
        available = set(types)
        if schema.collection:
            _require_branches(handle, None, available, schema.branches)
            available.add(JET_INDEX)
        dtypes: dict[str, str] = {}
        for column in schema.jet_columns:
            _require_branches(handle, column, available)
            if column.expr is None and column.branch == JET_INDEX and schema.collection:
                dtypes[column.name] = column.dtype or "int64"
            elif column.expr is None:
                assert column.branch is not None  # a column without an expression reads a branch
                source = _flat_dtype(handle, column.branch, types[column.branch], column, schema)
                dtypes[column.name] = column.dtype or source.name
            else:
                dtypes[column.name] = column.dtype or "float32"
        for block in schema.blocks:
            for feature in block.features:
                _require_branches(handle, feature, available)
                if feature.expr is None:
                    assert feature.branch is not None  # as above
                    _vector_dtype(handle, feature.branch, types[feature.branch], block.name)
                dtypes[feature.name] = feature_dtype(feature).name
        if schema.selection is not None:
            _require_branches(handle, None, available, schema.selection.names)
        return InputInfo(url=url, kind=kind.name, entries=handle.entries, size=file_size(url, options),
                         identity=handle.identity(), dtypes=dtypes)


def read_range(info: InputInfo, schema: Schema, entry_start: int, entry_stop: int, options: Mapping[str, Any],
               step: int) -> Iterator[JetTable]:
    """Yield the selected jets of entries [entry_start, entry_stop) in pieces of at most ``step`` entries."""
    url, branches = info.url, sorted(schema.branches)
    with open_input(url, inputs.get_kind(info.kind), schema, options) as handle:
        for begin in range(entry_start, entry_stop, step):
            end = min(entry_stop, begin + step)
            try:
                arrays = handle.read(branches, begin, end)
            except InputError:
                raise
            except Exception as exc:
                raise InputError(url, f"cannot read entries {begin}-{end} ({describe(exc)})") from None
            if schema.collection:
                per_jet, entries = explode(url, schema, arrays, begin)
            else:
                per_jet, entries = arrays, np.arange(begin, end, dtype=np.int64)
            yield build_table(url, schema, info.dtypes, per_jet, entries)


def build_table(url: str, schema: Schema, dtypes: Mapping[str, str], arrays: Mapping[str, Any],
                entries: np.ndarray) -> JetTable:
    """Apply selection and derived columns to one piece of per-jet arrays (whose tree entries are ``entries``)
    and cast to the storage dtypes; the entry number of every kept jet is stored as ``_entry`` (per-event
    inputs: its event's)."""
    n = len(entries)
    mask = None
    if schema.selection is not None:
        mask = _evaluate(url, schema.selection, arrays, "selection")
        mask = np.asarray(ak.to_numpy(mask) if isinstance(mask, ak.Array) else mask)
        if mask.shape != (n,) or mask.dtype != np.bool_:
            raise InputError(url, f"selection {schema.selection.source!r} must give one boolean per jet")
        if mask.all():
            mask = None
    jets = {}
    for column in schema.jet_columns:
        values = _column_values(url, column, arrays)
        if isinstance(values, ak.Array):
            if values.ndim != 1:
                raise InputError(url, f"jet column '{column.name}' gives several values per jet")
            values = ak.to_numpy(values)
        values = np.broadcast_to(np.asarray(values), (n,))
        jets[column.name] = cast_checked(url, column.name, values if mask is None else values[mask],
                                         dtypes[column.name])
    jets[ENTRY] = entries if mask is None else entries[mask]
    blocks = {}
    for block in schema.blocks:
        offsets = None
        features = {}
        for feature in block.features:
            values = _column_values(url, feature, arrays)
            if not isinstance(values, ak.Array) or values.ndim != 2:
                raise InputError(url, f"block '{block.name}' feature '{feature.name}' is not one list per jet")
            feature_offsets, flat = _offsets_and_values(values if mask is None else values[mask])
            if offsets is None:
                offsets, first = feature_offsets, feature.name
            elif not np.array_equal(offsets, feature_offsets):
                raise InputError(url, f"block '{block.name}': '{feature.name}' and '{first}' have different "
                                      "numbers of entries per jet")
            features[feature.name] = cast_checked(url, feature.name, flat, dtypes[feature.name])
        assert offsets is not None  # a block has at least one feature
        blocks[block.name] = BlockData(np.diff(offsets).astype(np.int32), features)
    return JetTable(jets, blocks)


def _offsets_and_values(values: ak.Array) -> tuple[np.ndarray, np.ndarray]:
    """Zero-based offsets and flat values of a one-level jagged array, without copies where possible."""
    layout = values.layout
    if isinstance(layout, ak.contents.ListOffsetArray) and isinstance(layout.content, ak.contents.NumpyArray):
        offsets = np.asarray(layout.offsets.data)
        flat = np.asarray(layout.content.data)[offsets[0]:offsets[-1]]
        return offsets - offsets[0], flat
    return offsets_of(ak.to_numpy(ak.num(values, axis=1))), ak.to_numpy(ak.flatten(values, axis=1))


def cast_checked(url: str, name: str, values: np.ndarray, dtype: str) -> np.ndarray:
    """Cast to the storage dtype, refusing any cast that would change a value beyond the type's precision."""
    target = np.dtype(dtype)
    if values.dtype == target:
        return np.ascontiguousarray(values)
    if target.kind == "b":
        if not np.isin(values, (0, 1)).all():
            raise InputError(url, f"'{name}' holds values other than 0/1; cannot store as bool")
        return values.astype(bool)
    if target.kind in "iu":
        if values.dtype.kind == "f" and not np.all(np.isfinite(values) & (values == np.round(values))):
            raise InputError(url, f"'{name}' holds non-integer values; cannot store as {target}")
        info = np.iinfo(target)
        if values.size and (values.min() < info.min or values.max() > info.max):
            raise InputError(url, f"'{name}' holds values outside the {target} range [{info.min}, {info.max}]")
        return values.astype(target)
    with np.errstate(over="ignore", invalid="ignore"):
        out = values.astype(target)
    overflow = ~np.isfinite(out) & np.isfinite(values)
    if overflow.any():
        bad = values[overflow][0]
        raise InputError(url, f"'{name}' holds {bad!r}, which overflows {target}")
    return out


def _column_values(url: str, column: Column, arrays: Mapping[str, ak.Array]) -> Any:
    if column.expr is None:
        assert column.branch is not None
        return arrays[column.branch]
    return _evaluate(url, column.expr, arrays, f"column '{column.name}'")


def _evaluate(url: str, expression, arrays: Mapping[str, ak.Array], what: str) -> Any:
    try:
        return expression.evaluate(arrays)
    except ExpressionError as exc:
        raise InputError(url, f"{what}: {exc}") from None


def _require_branches(handle: InputFile, column: Column | None, available: set[str],
                      names: frozenset[str] | None = None) -> None:
    wanted = names if names is not None else column.inputs if column is not None else frozenset()
    for name in sorted(wanted):
        if name not in available:
            close = difflib.get_close_matches(name, sorted(available), n=3)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            needed = f" (needed by '{column.name}')" if column is not None and column.name != name else ""
            raise InputError(handle.url, f"{handle.where} has no {handle.kind.member} '{name}'{needed}{hint}")


def _flat_dtype(handle: InputFile, name: str, kind: BranchType, column: Column, schema: Schema) -> np.dtype:
    what = f"{handle.kind.member} '{name}' has type {kind.typename}; jet column '{column.name}' needs one number per"
    if schema.collection and branch_kind(schema, name).kind == "jet":  # one list per event, one per jet
        if kind.lists and kind.dtype is not None:
            return kind.dtype
        raise InputError(handle.url, f"{what} {schema.collection} entry")
    if kind.numbers and kind.dtype is not None:
        return kind.dtype
    raise InputError(handle.url, f"{what} jet")


def _vector_dtype(handle: InputFile, name: str, kind: BranchType, block: str) -> None:
    if not kind.lists:
        raise InputError(handle.url, f"{handle.kind.member} '{name}' has type {kind.typename}; block '{block}' needs "
                                     f"{handle.kind.lists} of numbers per jet")
