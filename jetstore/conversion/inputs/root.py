"""ROOT input files, read with uproot: one TTree's top-level branches (numbers, and ``std::vector`` s of numbers);
the identity is the file's UUID (ROOT writes one into every file's header)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import awkward as ak
import uproot

from jetstore.conversion.inputs.base import BranchType, InputFile, InputKind, named_failures
from jetstore.errors import InputError
from jetstore.io import locations

DEFAULT_TREE = "Events"  # without a tree named: the only TTree, else this one (NanoAOD's, among Runs, ...)


class RootFile(InputFile):
    """One TTree of a local or remote ROOT file."""

    def __init__(self, url: str, tree: str | None, options: Mapping[str, Any]):
        super().__init__(KIND, url)
        self._handle = _open(url, options)
        try:
            self._tree = _tree(url, self._handle, tree)
        except BaseException:
            self._handle.close()
            raise

    @property
    def where(self) -> str:
        return f"tree '{self._tree.name}'"

    @property
    def tree(self) -> str:
        return self._tree.name

    @property
    def entries(self) -> int:
        return int(self._tree.num_entries)

    def branches(self) -> dict[str, BranchType]:
        return {branch.name: _branch_type(branch) for branch in self._tree.branches}

    def identity(self) -> str:
        return str(self._tree.file.uuid)

    def read(self, names: Sequence[str], start: int, stop: int) -> dict[str, ak.Array]:
        return self._tree.arrays(list(names), entry_start=start, entry_stop=stop, library="ak", how=dict)

    def close(self) -> None:
        self._handle.close()


def _open(url: str, options: Mapping[str, Any]):
    with named_failures(url, "cannot open as a ROOT file"):
        if locations.is_local(url):
            path = url.removeprefix("file://")
            if not os.path.exists(path):
                raise InputError(url, "no such file")
            return uproot.open(path)
        return uproot.open(url, handler=uproot.source.fsspec.FSSpecSource, **dict(options))


def _tree(url: str, handle, name: str | None) -> uproot.TTree:
    trees = sorted({k.split(";")[0] for k, c in handle.classnames().items() if c.startswith("TTree")})
    if name is None:
        if len(trees) != 1 and DEFAULT_TREE not in trees:
            raise InputError(url, f"{len(trees)} trees found ({', '.join(trees) or 'none'}); name one (--tree, or "
                                  "the schema's 'tree')")
        name = trees[0] if len(trees) == 1 else DEFAULT_TREE
    try:
        tree = handle[name]
    except Exception:
        raise InputError(url, f"no TTree '{name}' (trees in file: {', '.join(trees) or 'none'})") from None
    if not isinstance(tree, uproot.behaviors.TTree.TTree):
        raise InputError(url, f"'{name}' is a {handle.classname_of(name)}, not a TTree")
    return tree


def _branch_type(branch) -> BranchType:
    interpretation = branch.interpretation
    if isinstance(interpretation, uproot.AsDtype) and interpretation.to_dtype.shape == ():
        return BranchType(branch.typename, interpretation.to_dtype.newbyteorder("="), 0)
    if isinstance(interpretation, uproot.AsJagged) and isinstance(interpretation.content, uproot.AsDtype) \
            and interpretation.content.to_dtype.shape == ():
        return BranchType(branch.typename, interpretation.content.to_dtype.newbyteorder("="), 1)
    return BranchType(branch.typename)


KIND = InputKind("root", "ROOT", "a ROOT file", b"root", (".root",), RootFile, member="branch",
                 lists="a std::vector", needs_tree=True)
