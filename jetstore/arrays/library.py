"""Jets read from shards, as the library asked: awkward (``"ak"``), numpy (``"np"``) or pandas (``"pd"``), as
uproot gives them.

- ``"ak"``: one record per jet; a node feature is a list per jet (``var * float32``), sharing its block's offsets.
- ``"np"``: a dict of arrays; a node feature is an object array holding one array per jet (as uproot's ``"np"``).
- ``"pd"``: a DataFrame, one row per jet; a node feature is a column of lists (pyarrow-backed, zero-copy).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import awkward as ak
import numpy as np

from jetstore.arrays.columns import SAMPLE, Columns
from jetstore.errors import JetstoreError
from jetstore.store.table import JetTable, offsets_of


@dataclass(frozen=True)
class Gathered:
    """The jets of several reads, concatenated: jet-level columns (``_sample_`` too), and per node block its
    offsets and the values of its features."""

    n_jets: int
    jets: dict[str, np.ndarray]
    offsets: dict[str, np.ndarray]
    values: dict[str, np.ndarray]


def gather(parts: list[tuple[JetTable, int]], columns: Columns) -> Gathered:
    """Concatenate ``parts`` ((jets read, their sample index) each)."""
    def joined(arrays: list[np.ndarray], dtype: np.dtype) -> np.ndarray:
        return arrays[0] if len(arrays) == 1 else np.concatenate(arrays) if arrays else np.zeros(0, dtype)

    n = sum(table.n_jets for table, _ in parts)
    jets = {name: joined([t.jets[name] for t, _ in parts], columns.dtypes[name]) for name in columns.jets}
    if columns.sample:
        jets[SAMPLE] = np.repeat(np.array([s for _, s in parts], columns.dtypes[SAMPLE]),
                                 [t.n_jets for t, _ in parts])
    offsets, values = {}, {}
    for block, features in columns.blocks.items():
        offsets[block] = offsets_of(joined([t.blocks[block].counts for t, _ in parts], np.dtype("int32")))
        for name in features:
            values[name] = joined([t.blocks[block].features[name] for t, _ in parts], columns.dtypes[name])
    return Gathered(n, jets, offsets, values)


def empty(columns: Columns) -> Gathered:
    """No jets, every column of its dtype (what a lazy collection's type is made from)."""
    return Gathered(0, {name: np.zeros(0, columns.dtypes[name]) for name in (*columns.jets, SAMPLE)},
                    {block: np.zeros(1, np.int64) for block in columns.blocks},
                    {name: np.zeros(0, columns.dtypes[name]) for features in columns.blocks.values()
                     for name in features})


def by_name(data: Gathered, columns: Columns, lists: Callable[[np.ndarray, np.ndarray], Any]) -> dict[str, Any]:
    """Every column asked, in order: a jet-level one as its array, a node feature as ``lists(offsets, values)``."""
    return {name: data.jets[name] if (block := columns.block_of(name)) is None
            else lists(data.offsets[block], data.values[name]) for name in columns.names}


def to_awkward(data: Gathered, columns: Columns) -> ak.Array:
    def lists(offsets: np.ndarray, values: np.ndarray) -> ak.contents.Content:
        return ak.contents.ListOffsetArray(ak.index.Index64(offsets), ak.contents.NumpyArray(values))

    contents = [column if isinstance(column, ak.contents.Content) else ak.contents.NumpyArray(column)
                for column in by_name(data, columns, lists).values()]
    return ak.Array(ak.contents.RecordArray(contents, list(columns.names), length=data.n_jets))


def to_numpy(data: Gathered, columns: Columns) -> dict[str, np.ndarray]:
    def lists(offsets: np.ndarray, values: np.ndarray) -> np.ndarray:
        out = np.empty(len(offsets) - 1, dtype=object)
        for i, jet in enumerate(np.split(values, offsets[1:-1]) if len(out) else []):
            out[i] = jet
        return out

    return by_name(data, columns, lists)


def to_pandas(data: Gathered, columns: Columns) -> Any:
    import pandas as pd
    import pyarrow as pa

    def lists(offsets: np.ndarray, values: np.ndarray) -> Any:
        return pd.arrays.ArrowExtensionArray(pa.LargeListArray.from_arrays(pa.array(offsets), pa.array(values)))

    return pd.DataFrame(by_name(data, columns, lists), index=pd.RangeIndex(data.n_jets))


LIBRARIES: dict[str, Callable[[Gathered, Columns], Any]] = {"ak": to_awkward, "np": to_numpy, "pd": to_pandas}


def converter(library: str) -> Callable[[Gathered, Columns], Any]:
    try:
        return LIBRARIES[library]
    except KeyError:
        raise JetstoreError(f"library must be one of {', '.join(map(repr, LIBRARIES))}, not {library!r}") from None
