"""Parquet input files (``ak.to_parquet``, pyarrow, coffea skims), read with pyarrow.

Columns of numbers and lists of numbers are branches under their own names; the fields of a struct column are
``<column>_<field>`` (a coffea skim's ``Jet`` list of records gives ``Jet_pt``, ``Jet_eta``, ..., and its
counter ``nJet``, as NanoAOD names them). Only the columns asked for are read, row group by row group. The
identity is a hash of the footer (every row group's column chunks with their offsets, sizes and statistics):
Parquet files are written once, footer last, and never updated in place."""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import awkward as ak
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from jetstore.conversion.inputs.base import BranchType, InputFile, InputKind, content_hash, describe, open_binary
from jetstore.errors import InputError


@dataclass(frozen=True)
class _Leaf:
    """A branch of a Parquet file: its type, the Parquet column it reads, and the field path to it (or, for a
    counter ``n<Column>``, the list column it counts)."""

    type: BranchType
    column: str
    fields: tuple[str, ...]
    counter: bool = False


class ParquetFile(InputFile):
    """One Parquet file, local or remote (fsspec)."""

    def __init__(self, url: str, tree: str | None, options: Mapping[str, Any]):
        super().__init__(KIND, url)
        self._raw = open_binary(url, options)
        try:
            self._parquet = pq.ParquetFile(self._raw)
        except Exception as exc:
            self._raw.close()
            raise InputError(url, f"cannot open as a Parquet file ({describe(exc)})") from None
        metadata = self._parquet.metadata
        self._starts = np.cumsum([0] + [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)])
        paths = [metadata.schema.column(i).path for i in range(metadata.num_columns)]
        self._leaves = _leaves(self._parquet.schema_arrow, paths)
        self._cached: tuple[tuple, ak.Array] | None = None  # the last row groups read (a step is often less)

    @property
    def entries(self) -> int:
        return int(self._parquet.metadata.num_rows)

    def branches(self) -> dict[str, BranchType]:
        return {name: leaf.type for name, leaf in self._leaves.items()}

    def identity(self) -> str:
        self._raw.seek(-8, 2)
        tail = self._raw.read(8)
        end = self._raw.tell() - 8
        (length,) = struct.unpack("<I", tail[:4])
        return content_hash(self._raw, end - length, end)

    def read(self, names: Sequence[str], start: int, stop: int) -> dict[str, ak.Array]:
        leaves = {name: self._leaves[name] for name in names}
        groups = tuple(int(g) for g in np.flatnonzero((self._starts[1:] > start) & (self._starts[:-1] < stop)))
        columns = tuple(sorted({leaf.column for leaf in leaves.values()}))
        key = (groups, columns)
        if self._cached is None or self._cached[0] != key:
            table = self._parquet.read_row_groups(list(groups), columns=list(columns), use_threads=False)
            # without the awkward form ak.to_parquet stores: it would hide the nulls of a column rewritten since;
            # sliced in awkward, not in Arrow (awkward 2.14 drops the offset of a sliced Arrow validity bitmap)
            self._cached = (key, ak.from_arrow(table.replace_schema_metadata(None)))
        first = int(self._starts[groups[0]]) if groups else start
        table = self._cached[1][start - first:stop - first]
        out = {}
        for name, leaf in leaves.items():
            values = table[leaf.fields[0]]
            for field in leaf.fields[1:]:
                values = values[field]
            out[name] = ak.num(values, axis=1) if leaf.counter else self._without_nulls(name, values, start)
        return out

    def _without_nulls(self, name: str, values: ak.Array, start: int) -> ak.Array:
        """The values without their option type (nullable Parquet columns); a null is an error naming the entry."""
        if not _has_option(values.layout):
            return values
        missing = ak.to_numpy(ak.is_none(values, axis=0))
        if values.ndim > 1:
            missing |= ak.to_numpy(ak.fill_none(ak.any(ak.is_none(values, axis=1), axis=1), False))
        if missing.any():
            raise InputError(self.url, f"column '{name}' holds a null (missing value) at entry "
                                       f"{start + int(np.argmax(missing))}")
        return ak.drop_none(values)


def _has_option(layout: ak.contents.Content) -> bool:
    return layout.is_option or (hasattr(layout, "content") and _has_option(layout.content))


def _leaves(schema: pa.Schema, paths: list[str]) -> dict[str, _Leaf]:
    """Every branch of an Arrow schema, with the Parquet leaf columns in schema order (``paths``)."""
    out: dict[str, _Leaf] = {}
    position = 0
    for field in schema:
        count = _leaf_count(field.type)
        own = paths[position:position + count]
        position += count
        _walk(out, field.name, (field.name,), field.type, own, 0)
        item = _list_item(field.type)
        if item is not None and pa.types.is_struct(item) and f"n{field.name}" not in out:
            out[f"n{field.name}"] = _Leaf(BranchType(f"entries of {field.name}", np.dtype("int64"), 0), own[0],
                                          (field.name,), counter=True)
    return out


def _walk(out: dict[str, _Leaf], name: str, fields: tuple[str, ...], kind: pa.DataType, paths: list[str],
          depth: int) -> None:
    item = _list_item(kind)
    if item is not None:
        _walk(out, name, fields, item, paths, depth + 1)
    elif pa.types.is_struct(kind):
        position = 0
        for child in kind:
            count = _leaf_count(child.type)
            _walk(out, f"{name}_{child.name}", (*fields, child.name), child.type, paths[position:position + count],
                  depth)
            position += count
    elif name not in out:
        numeric = pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)
        usable = numeric and depth <= 1
        typename = str(kind) + " list" * depth
        out[name] = _Leaf(BranchType(typename, np.dtype(kind.to_pandas_dtype()) if usable else None, depth), paths[0],
                          fields)


def _list_item(kind: pa.DataType) -> pa.DataType | None:
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
        return kind.value_type
    return None


def _leaf_count(kind: pa.DataType) -> int:
    """How many Parquet leaf columns an Arrow type is stored as."""
    item = _list_item(kind)
    if item is not None:
        return _leaf_count(item)
    if pa.types.is_struct(kind):
        return sum(_leaf_count(child.type) for child in kind)
    if pa.types.is_map(kind):
        return _leaf_count(kind.key_type) + _leaf_count(kind.item_type)
    return 1


KIND = InputKind("parquet", "Parquet", "a Parquet file", b"PAR1", (".parquet", ".parq", ".pq"), ParquetFile)
