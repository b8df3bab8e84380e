"""The input-reader interface: what an input file holds (its entries, its named branches with their types, a
content identity) and reading an entry range of named branches as awkward arrays.

One implementation per input kind (ROOT, Parquet, HDF5), each one file of this package with a ``KIND``
registered in ``inputs/__init__.py``. Everything else (validation against the schema, selection, expressions,
casts, per-event inputs, schema inference) works on these descriptions and arrays, whatever the kind."""

from __future__ import annotations

import contextlib
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any

import awkward as ak
import numpy as np
import xxhash

from jetstore.documents import DocumentError, open_regular
from jetstore.errors import InputError
from jetstore.store import storage


@dataclass(frozen=True)
class BranchType:
    """A branch's type: numbers of ``dtype``, one per entry (``depth`` 0) or a list of them per entry (1);
    ``dtype`` None for anything else (not convertible). ``typename``: as the file spells it, for messages."""

    typename: str
    dtype: np.dtype | None = None
    depth: int = 0

    @property
    def numbers(self) -> bool:
        """One number per entry."""
        return self.dtype is not None and self.depth == 0

    @property
    def lists(self) -> bool:
        """A list of numbers per entry."""
        return self.dtype is not None and self.depth == 1


class InputFile(ABC):
    """One open input file (a context manager: ``with kind.open(url, tree, options) as handle``)."""

    def __init__(self, kind: InputKind, url: str):
        self.kind, self.url = kind, url

    @property
    def where(self) -> str:
        """What holds the branches, for messages: ``tree 'Events'``, ``the Parquet file``."""
        return f"the {self.kind.title} file"

    @property
    def tree(self) -> str | None:
        """The tree read (ROOT), else None."""
        return None

    @property
    @abstractmethod
    def entries(self) -> int:
        """Number of entries (rows): jets of a per-jet library, events of a per-event one."""

    @abstractmethod
    def branches(self) -> Mapping[str, BranchType]:
        """Every branch by name, in the file's order (unusable ones too, with ``dtype`` None)."""

    @abstractmethod
    def identity(self) -> str:
        """What identifies this file's content wherever it lies (with its size): recorded in the manifest, part
        of every shard's task key, and how an append recognises an input the dataset already has."""

    @abstractmethod
    def read(self, names: Sequence[str], start: int, stop: int) -> dict[str, ak.Array]:
        """Entries ``[start, stop)`` of the named branches (numbers: 1-D arrays; lists: one list per entry)."""

    def close(self) -> None:  # noqa: B027 - optional
        """Release the file."""

    def __enter__(self) -> InputFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class InputKind:
    """One kind of input file: its name (the schema's ``source``, the manifest's input ``kind``), how it is
    recognised (the first bytes, else the file name's suffix) and opened (``open(url, tree, options)``), and
    the words its messages use."""

    name: str
    title: str  # "ROOT", "Parquet", "HDF5"
    noun: str  # "a ROOT file", "an HDF5 file"
    magic: bytes
    suffixes: tuple[str, ...]
    open: Callable[[str, str | None, Mapping[str, Any]], InputFile]
    member: str = "column"  # what a branch is called in this kind: branch, column, dataset
    lists: str = "a list"  # what one list of numbers per entry is: "a std::vector", "a list"
    needs_tree: bool = False  # the schema must name a tree (ROOT)


def open_binary(url: str, options: Mapping[str, Any]) -> IO[bytes]:
    """A local path or fsspec URL opened for reading bytes; a missing file, or a local path that is not a regular
    file (a folder, a FIFO: refused without blocking), is an :class:`InputError`."""
    try:
        if storage.is_local(url):
            return open_regular(url.removeprefix("file://"))
        fs, path = storage.filesystem(url, options)
        return fs.open(path, "rb")
    except FileNotFoundError:
        raise InputError(url, "no such file") from None
    except IsADirectoryError:
        raise InputError(url, "is a directory, not a file") from None
    except DocumentError as exc:
        raise InputError(url, str(exc)) from None


@contextlib.contextmanager
def named_failures(url: str, what: str) -> Iterator[None]:
    """Any failure in the block as one :class:`InputError` naming ``url``: ``no such file``, or ``what`` and the
    cause (an :class:`InputError` passes as it is)."""
    try:
        yield
    except InputError:
        raise
    except FileNotFoundError:
        raise InputError(url, "no such file") from None
    except Exception as exc:
        raise InputError(url, f"{what} ({describe(exc)})") from None


def file_size(url: str, options: Mapping[str, Any]) -> int:
    if storage.is_local(url):
        return os.path.getsize(url.removeprefix("file://"))
    fs, path = storage.filesystem(url, options)
    return int(fs.size(path))


def content_hash(handle: IO[bytes], start: int = 0, stop: int | None = None, block: int = 8 << 20) -> str:
    """xxh3-128 of bytes ``[start, stop)`` of an open file (to its end when ``stop`` is None), read in blocks."""
    digest = xxhash.xxh3_128()
    handle.seek(start)
    left = None if stop is None else stop - start
    while left is None or left > 0:
        chunk = handle.read(block if left is None else min(block, left))
        if not chunk:
            break
        digest.update(chunk)
        if left is not None:
            left -= len(chunk)
    return digest.hexdigest()


def describe(exc: BaseException) -> str:
    """An exception as one short line: its type and the first line of its message."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")
