"""Input kinds: ROOT, Parquet and HDF5 jet libraries behind one interface (``base.py``), one file each.

A file's kind is told by its first bytes, else by the schema's ``source``, else by its name's suffix. Adding a
kind: ``inputs/mykind.py`` with ``KIND = InputKind("mykind", ...)`` and an ``InputFile`` subclass, and one
entry in ``KINDS`` below; ``convert``, ``schema infer`` and ``source: mykind`` in schemas then accept it."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any

from jetstore.conversion.inputs import hdf5, parquet, root
from jetstore.conversion.inputs.base import BranchType, InputFile, InputKind, named_failures, open_binary
from jetstore.errors import InputError, SchemaError
from jetstore.io import filesystems, locations

KINDS: dict[str, InputKind] = {k.name: k for k in (root.KIND, parquet.KIND, hdf5.KIND)}
MAGIC_BYTES = max(len(k.magic) for k in KINDS.values())


def get_kind(name: str) -> InputKind:
    """The input kind of that name (a schema's ``source``); an unknown one is a :class:`SchemaError`."""
    if name not in KINDS:
        raise SchemaError(f"source '{name}' is not an input kind jetstore reads (known: {', '.join(KINDS)})")
    return KINDS[name]


def detect(url: str, options: Mapping[str, Any], source: str | None = None) -> InputKind:
    """The kind of the file at ``url``: by its first bytes; else the schema's ``source``; else by its suffix.
    A file whose bytes say another kind than ``source`` is an :class:`InputError`."""
    head = _head(url, options)
    found = next((k for k in KINDS.values() if head.startswith(k.magic)), None)
    if source is not None:
        wanted = get_kind(source)
        if found is not None and found is not wanted:
            raise InputError(url, f"is {found.noun}, but the schema's source is '{wanted.name}'")
        return wanted
    if found is not None:
        return found
    name = PurePosixPath(url).name.lower()
    by_suffix = next((k for k in KINDS.values() if name.endswith(k.suffixes)), None)
    if by_suffix is None:
        raise InputError(url, f"not a file jetstore reads ({', '.join(k.title for k in KINDS.values())}; told by "
                              "the first bytes, else the schema's source or the file name)")
    return by_suffix


def stem(url: str) -> str:
    """The file name without the suffix of its kind (``ttbar_1.root`` → ``ttbar_1``; others as they are)."""
    name = PurePosixPath(url).name
    for kind in KINDS.values():
        for suffix in kind.suffixes:
            if name.lower().endswith(suffix) and len(name) > len(suffix):
                return name[:-len(suffix)]
    return name


def _head(url: str, options: Mapping[str, Any]) -> bytes:
    """The first bytes of a file (remote: one ranged read, not a read-ahead block)."""
    with named_failures(url, "cannot read"):
        if locations.is_local(url):
            with open_binary(url, options) as handle:
                return handle.read(MAGIC_BYTES)
        fs, path = filesystems.filesystem(url, options)
        return fs.cat_file(path, start=0, end=MAGIC_BYTES)


__all__ = ["KINDS", "BranchType", "InputFile", "InputKind", "detect", "get_kind", "stem"]
