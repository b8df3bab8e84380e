"""Which columns a read asks for: stored jet-level columns, node-level features (one list per jet) and
``_sample_``, checked against every dataset read (several datasets must store each asked column alike)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from jetstore.errors import DatasetError
from jetstore.model.layout import Selection, TableColumns

SAMPLE = "_sample_"  # the jet's sample: an index into the samples read (as the sampler's batches say it)
SAMPLE_DTYPE = np.dtype("int64")


@dataclass(frozen=True)
class Columns:
    """The columns of a read, in the order asked: ``jets`` (jet-level, stored), ``blocks`` (node block →
    its features asked), whether ``_sample_`` is asked, and every column's dtype."""

    names: tuple[str, ...]
    jets: tuple[str, ...]
    blocks: dict[str, tuple[str, ...]]
    dtypes: dict[str, np.dtype]

    @property
    def selection(self) -> Selection:
        return Selection(self.jets, self.blocks)

    @property
    def sample(self) -> bool:
        return SAMPLE in self.names

    def block_of(self, name: str) -> str | None:
        """The node block of a feature asked (None: a jet-level column)."""
        return next((block for block, features in self.blocks.items() if name in features), None)

    def subset(self, names: Iterable[str]) -> Columns:
        """These columns restricted to ``names`` (in this order)."""
        keep = set(names)
        return Columns(tuple(n for n in self.names if n in keep), tuple(n for n in self.jets if n in keep),
                       {b: tuple(f for f in fs if f in keep) for b, fs in self.blocks.items()
                        if any(f in keep for f in fs)},
                       {n: d for n, d in self.dtypes.items() if n in keep})


def every_column(stored: TableColumns) -> tuple[str, ...]:
    """What a read gives when no columns are named: every stored column, then ``_sample_``."""
    return (*stored.jet_names, *(name for block in stored.blocks for name in block.names), SAMPLE)


def resolve(asked: str | Iterable[str] | None, stored: Sequence[tuple[str, TableColumns]]) -> Columns:
    """The columns ``asked`` (a name, names, or None: every column of the first dataset) of the datasets
    ``stored`` ((url, stored columns) each). An unknown column, or one that datasets store differently, is a
    :class:`DatasetError` naming it and the dataset."""
    first_url, first = stored[0]
    names = every_column(first) if asked is None else (asked,) if isinstance(asked, str) else tuple(asked)
    names = tuple(dict.fromkeys(names))
    jets: list[str] = []
    blocks: dict[str, list[str]] = {}
    dtypes: dict[str, np.dtype] = {}
    for name in names:
        where = None
        for url, columns in stored:
            found = _locate(name, columns)
            if found is None:
                raise DatasetError(f"{url}: no column '{name}'{_hint(name, columns)}")
            if where is not None and found != where:
                raise DatasetError(f"{url}: column '{name}' is {_shown(found)} here but {_shown(where)} in "
                                   f"{first_url}: the datasets cannot be read as one")
            where = found
        assert where is not None  # stored holds at least one dataset
        block, dtype = where
        dtypes[name] = dtype
        if block is None:
            if name != SAMPLE:
                jets.append(name)
        else:
            blocks.setdefault(block, []).append(name)
    return Columns(names, tuple(jets), {b: tuple(f) for b, f in blocks.items()}, dtypes)


def _locate(name: str, columns: TableColumns) -> tuple[str | None, np.dtype] | None:
    """(block or None, dtype) of a column."""
    if name == SAMPLE:
        return None, SAMPLE_DTYPE
    if name in columns.jet_names:
        return None, np.dtype(dict(columns.jets)[name])
    for block in columns.blocks:
        if name in block.names:
            return block.name, np.dtype(dict(block.features)[name])
    return None


def _hint(name: str, columns: TableColumns) -> str:
    close = difflib.get_close_matches(name, every_column(columns), n=3)
    return f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""


def _shown(where: tuple[str | None, np.dtype]) -> str:
    block, dtype = where
    return f"{dtype} per jet" if block is None else f"{dtype} per node of block '{block}'"
