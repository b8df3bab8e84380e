"""``jetstore schema infer``: propose a schema for unseen ROOT, Parquet or HDF5 files.

Scalar branches become jet columns, one-hot ``label_*`` branches become labels, and list branches
(``std::vector``, Parquet lists, HDF5 list datasets) are grouped into node blocks: branches of one block have
the same multiplicity per jet, and the block is named after the group's common prefix (``jet_pfcand_*`` →
``pfcand``, ``part_*`` → ``part``). Every file given is read and must agree (same kind, tree, branches, types
and blocks); the schema sorts shards by (class, jet pT), which the sampler relies on to read only the jets it
keeps. Floating-point branches whose sampled values are all small integers (charges, particle ids, counts) are
proposed as ``int8`` / ``int16``: a quarter or half of the bytes, and the conversion refuses any value that
would not fit exactly.
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import awkward as ak
import numpy as np

from jetstore.conversion import infer_nano, inputs
from jetstore.conversion.inputs import BranchType
from jetstore.conversion.inputs.base import describe
from jetstore.errors import InputError, SchemaError
from jetstore.io import settings

SAMPLE_ENTRIES = 5000
PT_NAMES = ("jet_pt", "fj_pt", "pt")


@dataclass(frozen=True)
class FileLayout:
    """What one file holds: its kind and tree, each branch's kind (scalar / label / vector) with its type,
    blocks."""

    kind: str
    tree: str | None
    branches: dict[str, str]
    blocks: tuple[tuple[str, ...], ...]
    skipped: tuple[str, ...]
    integers: dict[str, str]  # floating-point branches holding only small integers: "int8" or "int16"


def infer_schema(urls: str | Sequence[str], tree_name: str | None = None, name: str | None = None,
                 sample_entries: int = SAMPLE_ENTRIES, options: Mapping[str, Any] | None = None,
                 ) -> tuple[dict[str, Any], list[str]]:
    """Schema data (ready for YAML) describing every file in ``urls`` (``tree_name``: the ROOT tree), and the
    branches left out; files that disagree raise a :class:`SchemaError` naming the file and branch."""
    urls = [urls] if isinstance(urls, str) else list(urls)
    options = settings.resolve_storage_options(urls[0], options)
    nano = _nanoaod(urls, tree_name, name, options)
    if nano is not None:
        return nano, []
    layouts = [_read_layout(url, tree_name, sample_entries, options) for url in urls]
    reference = layouts[0]
    for url, layout in zip(urls[1:], layouts[1:], strict=True):
        _check_agreement(urls[0], reference, url, layout)
    small = {}  # small integers in every file: the widest type any file needs
    for branch in reference.branches:
        kinds = [layout.integers.get(branch) for layout in layouts]
        if all(kinds):
            small[branch] = "int16" if "int16" in kinds else "int8"
    jets = [_column(b, small) for b, kind in reference.branches.items() if kind.startswith("scalar")]
    labels = [b for b, kind in reference.branches.items() if kind.startswith("label")]
    blocks: dict[str, Any] = {}
    for index, names in enumerate(reference.blocks):
        blocks[_block_name(list(names), index, blocks)] = {"features": [_column(b, small) for b in names]}
    schema: dict[str, Any] = {"name": name or _default_name(urls), "source": reference.kind}
    if reference.tree is not None:
        schema["tree"] = reference.tree
    schema.update(jets=jets, labels=labels, blocks=blocks)
    sort_by = (["label"] if labels else []) + [c for c in (_pt_column([_name(j) for j in jets]),) if c]
    if sort_by:
        schema["sort_by"] = sort_by
    return schema, list(reference.skipped)


def _open(url: str, tree_name: str | None, options: Mapping[str, Any]) -> inputs.InputFile:
    return inputs.detect(url, options).open(url, tree_name, options)


def _nanoaod(urls: list[str], tree_name: str | None, name: str | None,
             options: Mapping[str, Any]) -> dict[str, Any] | None:
    """A per-event schema when every file is NanoAOD-like (:mod:`infer_nano`), else None."""
    described: list[dict[str, BranchType]] = []
    for url in urls:
        with _open(url, tree_name, options) as handle:
            described.append(dict(handle.branches()))
            tree = handle.tree
        if not infer_nano.is_nanoaod(set(described[-1])):
            return None
    return infer_nano.propose(described, tree, name)


def _read_layout(url: str, tree_name: str | None, sample_entries: int, options: Mapping[str, Any]) -> FileLayout:
    with _open(url, tree_name, options) as handle:
        types = handle.branches()
        usable = [branch for branch, kind in types.items() if kind.numbers or kind.lists]
        stop = min(handle.entries, sample_entries)
        try:
            arrays = handle.read(usable, 0, stop)
        except InputError:
            raise
        except Exception as exc:
            raise InputError(url, f"cannot read entries 0-{stop} ({describe(exc)})") from None
        branches, skipped, integers = {}, [], {}
        groups: dict[bytes, list[str]] = defaultdict(list)
        for branch, kind in types.items():
            dtype = kind.dtype
            if dtype is not None and kind.numbers:
                values = ak.to_numpy(arrays[branch])
                is_label = branch.startswith("label_") and _is_binary(values)
                branches[branch] = f"{'label' if is_label else 'scalar'} {dtype.name}"
            elif dtype is not None and kind.lists:
                branches[branch] = f"vector {dtype.name}"
                counts = ak.to_numpy(ak.num(arrays[branch], axis=1)).astype(np.int64)
                groups[counts.tobytes()].append(branch)
                values, is_label = ak.to_numpy(ak.flatten(arrays[branch])), False
            else:
                skipped.append(branch)
                continue
            small = _small_integers(values) if dtype.kind == "f" and not is_label else None
            if small:
                integers[branch] = small
        return FileLayout(handle.kind.name, handle.tree, branches, tuple(tuple(g) for g in groups.values()),
                          tuple(skipped), integers)


def _check_agreement(first_url: str, first: FileLayout, url: str, layout: FileLayout) -> None:
    """Files of one dataset must be of one kind and hold the same tree, branches, types and blocks."""
    if layout.kind != first.kind:
        raise SchemaError(f"{url}: is {inputs.get_kind(layout.kind).noun}, but {first_url} is "
                          f"{inputs.get_kind(first.kind).noun}")
    if layout.tree != first.tree:
        raise SchemaError(f"{url}: tree '{layout.tree}' differs from '{first.tree}' in {first_url}")
    for branch in first.branches:
        if branch not in layout.branches:
            raise SchemaError(f"{url}: has no branch '{branch}', which {first_url} has")
    for branch, kind in layout.branches.items():
        if branch not in first.branches:
            raise SchemaError(f"{url}: branch '{branch}' is not in {first_url}")
        if kind != first.branches[branch]:
            raise SchemaError(f"{url}: branch '{branch}' is {kind} here but {first.branches[branch]} in {first_url}")
    block_of = {b: names for names in first.blocks for b in names}
    for names in layout.blocks:
        for branch in names:
            if set(block_of[branch]) != set(names):
                raise SchemaError(f"{url}: branch '{branch}' has the multiplicity of "
                                  f"{', '.join(sorted(set(names) - {branch})) or 'no other branch'} here but of "
                                  f"{', '.join(sorted(set(block_of[branch]) - {branch}))} in {first_url}")


def _small_integers(values: np.ndarray) -> str | None:
    """"int8" / "int16" when every value is an integer in that range, else None."""
    if not len(values) or not np.isfinite(values).all() or not (values == np.round(values)).all():
        return None
    low, high = float(values.min()), float(values.max())
    for name in ("int8", "int16"):
        info = np.iinfo(name)
        if info.min <= low and high <= info.max:
            return name
    return None


def _column(branch: str, small: dict[str, str]) -> str | dict[str, str]:
    return {"name": branch, "dtype": small[branch]} if branch in small else branch


def _name(column: str | dict[str, str]) -> str:
    return column if isinstance(column, str) else column["name"]


def _pt_column(jets: list[str]) -> str | None:
    """The jet pT column: ``jet_pt`` (or ``fj_pt`` / ``pt``), else the first scalar named ``*_pt``."""
    for name in PT_NAMES:
        if name in jets:
            return name
    return next((name for name in jets if name.endswith("_pt")), None)


def _default_name(urls: list[str]) -> str:
    stems = [inputs.stem(u) for u in urls]
    common = os.path.commonprefix(stems).rstrip("_-.0123456789")  # noqa: RUF071 - a prefix of names, not paths
    return re.sub(r"[^A-Za-z0-9_]", "_", common) or "dataset"


def _is_binary(values: np.ndarray) -> bool:
    return bool(np.isin(values, (0, 1)).all())


def _block_name(names: list[str], index: int, taken: dict) -> str:
    tokens = [n.split("_") for n in names]
    common = tokens[0][:-1] if len(names) == 1 else []
    if len(names) > 1:
        for parts in zip(*tokens, strict=False):
            if len(set(parts)) != 1:
                break
            common.append(parts[0])
    name = "_".join(common).removeprefix("jet_").removeprefix("jet") or f"block{index}"
    return name if name not in taken and name.isidentifier() else f"block{index}"
