"""HDF5 input files, weaver-style (one dataset per branch in the file's root group, as weaver-core's HDF5 reader
reads them), read with h5py (``pip install 'jetstore[hdf5]'``).

- a 1-D dataset of numbers with one value per entry is a branch of numbers;
- a 1-D dataset whose attribute ``offsets`` names another dataset of entries + 1 integer offsets (from 0 to the
  dataset's length; the branches of one block share one) is a branch of lists: entry i holds values
  ``offsets[i]:offsets[i + 1]``;
- a 2-D dataset ``(entries, k)`` is a branch of lists of k values each (weaver's padded arrays).

The number of entries is the length most of the 1-D datasets share. HDF5 files can be updated in place, so
the identity is a hash of all the file's bytes (read once, when the file is inspected)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import awkward as ak
import numpy as np

from jetstore.conversion.inputs.base import BranchType, InputFile, InputKind, content_hash, describe, open_binary
from jetstore.errors import InputError

OFFSETS = "offsets"  # the attribute of a list dataset naming its offsets dataset


@dataclass(frozen=True)
class _Column:
    type: BranchType
    offsets: str | None = None  # the offsets dataset of a flat list dataset


class Hdf5File(InputFile):
    """One HDF5 file, local or remote (fsspec)."""

    def __init__(self, url: str, tree: str | None, options: Mapping[str, Any]):
        try:
            import h5py
        except ModuleNotFoundError:  # where it runs (a Dask worker's image may lack it): this input fails, named
            raise InputError(url, "reading HDF5 needs h5py, an optional dependency: pip install 'jetstore[hdf5]'"
                             ) from None
        super().__init__(KIND, url)
        self._raw = open_binary(url, options)
        try:
            self._file = h5py.File(self._raw, "r")
        except Exception as exc:
            self._raw.close()
            raise InputError(url, f"cannot open as an HDF5 file ({describe(exc)})") from None
        try:
            self._entries, self._columns = _columns(url, self._file, h5py.Dataset)
        except BaseException:
            self.close()
            raise

    @property
    def entries(self) -> int:
        return self._entries

    def branches(self) -> dict[str, BranchType]:
        return {name: column.type for name, column in self._columns.items()}

    def identity(self) -> str:
        return content_hash(self._raw)

    def read(self, names: Sequence[str], start: int, stop: int) -> dict[str, ak.Array]:
        offsets: dict[str, np.ndarray] = {}
        out = {}
        for name in names:
            column, data = self._columns[name], self._file[name]
            if column.offsets is None and data.ndim == 1:
                out[name] = ak.Array(_native(data[start:stop]))
            elif column.offsets is None:
                out[name] = ak.from_regular(ak.Array(_native(data[start:stop])), axis=1)
            else:
                if column.offsets not in offsets:
                    offsets[column.offsets] = self._offsets(column.offsets, start, stop)
                bounds = offsets[column.offsets]
                content = ak.contents.NumpyArray(_native(data[bounds[0]:bounds[-1]]))
                out[name] = ak.Array(ak.contents.ListOffsetArray(ak.index.Index64(bounds - bounds[0]), content))
        return out

    def _offsets(self, name: str, start: int, stop: int) -> np.ndarray:
        bounds = self._file[name][start:stop + 1].astype(np.int64)
        if (np.diff(bounds) < 0).any():
            raise InputError(self.url, f"offsets dataset '{name}' decreases at entry "
                                       f"{start + int(np.argmax(np.diff(bounds) < 0))}")
        return bounds

    def close(self) -> None:
        self._file.close()
        self._raw.close()


def _columns(url: str, file, dataset_type) -> tuple[int, dict[str, _Column]]:
    """The number of entries and every dataset of the root group as a column."""
    datasets = {name: item for name, item in file.items() if isinstance(item, dataset_type)}
    offsets = {name: _text(item.attrs[OFFSETS]) for name, item in datasets.items() if OFFSETS in item.attrs}
    lengths = [len(d) for n, d in datasets.items() if d.ndim >= 1 and n not in offsets and n not in offsets.values()]
    lengths += [len(datasets[o]) - 1 for o in set(offsets.values()) if o in datasets and datasets[o].ndim == 1]
    entries = Counter(lengths).most_common(1)[0][0] if lengths else 0
    columns = {}
    for name, data in datasets.items():
        if name in offsets.values():
            continue
        numeric = data.dtype.kind in "biuf"
        typename = f"{data.dtype.name if numeric else data.dtype}{''.join(f'[{n}]' for n in data.shape[1:])}"
        if name in offsets:
            _check_offsets(url, name, data, datasets.get(offsets[name]), entries)
            usable = numeric and data.ndim == 1
            columns[name] = _Column(BranchType(f"{typename} lists (offsets '{offsets[name]}')",
                                               data.dtype.newbyteorder("=") if usable else None, 1), offsets[name])
        elif data.ndim in (1, 2) and len(data) == entries and numeric:
            columns[name] = _Column(BranchType(typename, data.dtype.newbyteorder("="), data.ndim - 1))
        else:
            note = "" if data.ndim == 0 or len(data) == entries else f", {len(data)} rows but the file has {entries}"
            columns[name] = _Column(BranchType(f"{typename}{note}"))
    return entries, columns


def _native(values: np.ndarray) -> np.ndarray:
    """In this machine's byte order (HDF5 keeps the writer's; awkward takes native arrays only)."""
    return values.astype(values.dtype.newbyteorder("="), copy=False)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _check_offsets(url: str, name: str, data, offsets, entries: int) -> None:
    """A list dataset's offsets: a 1-D integer dataset of entries + 1 values from 0 to the dataset's length."""
    target = _text(data.attrs[OFFSETS])
    if offsets is None:
        raise InputError(url, f"dataset '{name}': its offsets dataset '{target}' does not exist")
    if offsets.ndim != 1 or offsets.dtype.kind not in "iu" or len(offsets) != entries + 1:
        raise InputError(url, f"dataset '{name}': offsets '{target}' must be {entries + 1} integers (entries + 1), "
                              f"not {offsets.dtype}{list(offsets.shape)}")
    first, last = int(offsets[0]), int(offsets[-1])
    if first != 0 or last != len(data):
        raise InputError(url, f"dataset '{name}': offsets '{target}' run from {first} to {last}, not from 0 to its "
                              f"length {len(data)}")


KIND = InputKind("hdf5", "HDF5", "an HDF5 file", b"\x89HDF\r\n\x1a\n", (".h5", ".hdf5", ".hdf"), Hdf5File,
                 member="dataset", lists="a dataset of lists (flat values with an 'offsets' attribute, or 2-D)")
