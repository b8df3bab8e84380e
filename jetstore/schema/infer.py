"""``jetstore schema infer``: propose a schema for unseen ROOT files.

Scalar branches become jet columns, one-hot ``label_*`` branches become labels, and ``std::vector`` branches
are grouped into node blocks: branches of one block have the same multiplicity per jet, and the block is
named after the group's common prefix (``jet_pfcand_*`` → ``pfcand``, ``part_*`` → ``part``). Every file
given is read and must agree (same tree, branches, types and blocks); the schema sorts shards by
(class, jet pT), which the sampler relies on to read only the jets it keeps. Floating-point branches whose
sampled values are all small integers (charges, particle ids, counts) are proposed as ``int8`` / ``int16``:
a quarter or half of the bytes, and the conversion refuses any value that would not fit exactly.
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import awkward as ak
import numpy as np
import uproot

from jetstore.errors import InputError, SchemaError

SAMPLE_ENTRIES = 5000
PT_NAMES = ("jet_pt", "fj_pt", "pt")


@dataclass(frozen=True)
class FileLayout:
    """What one file holds: its tree, each branch's kind (scalar / label / vector) with its type, blocks."""

    tree: str
    branches: dict[str, str]
    blocks: tuple[tuple[str, ...], ...]
    skipped: tuple[str, ...]
    integers: dict[str, str]  # floating-point branches holding only small integers: "int8" or "int16"


def infer_schema(urls: str | Sequence[str], tree_name: str | None = None, name: str | None = None,
                 sample_entries: int = SAMPLE_ENTRIES) -> tuple[dict[str, Any], list[str]]:
    """Schema data (ready for YAML) describing the tree of every file in ``urls``, and the branches left
    out; files that disagree raise a :class:`SchemaError` naming the file and branch."""
    urls = [urls] if isinstance(urls, str) else list(urls)
    nano = _nanoaod(urls, tree_name, name)
    if nano is not None:
        return nano, []
    layouts = [_read_layout(url, tree_name, sample_entries) for url in urls]
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
    schema: dict[str, Any] = {"name": name or _default_name(urls), "tree": reference.tree, "jets": jets,
                              "labels": labels, "blocks": blocks}
    sort_by = (["label"] if labels else []) + [c for c in (_pt_column([_name(j) for j in jets]),) if c]
    if sort_by:
        schema["sort_by"] = sort_by
    return schema, list(reference.skipped)


def _nanoaod(urls: list[str], tree_name: str | None, name: str | None) -> dict[str, Any] | None:
    """A per-event schema when every file is NanoAOD-like (:mod:`infer_nano`), else None."""
    from jetstore.schema import infer_nano

    handles = []
    try:
        for url in urls:
            try:
                handles.append(uproot.open(url))
            except Exception as exc:
                raise InputError(url, f"cannot open as a ROOT file ({type(exc).__name__}: {exc})") from None
        trees = [h.get(tree_name or "Events", None) for h in handles]
        if not all(t is not None and infer_nano.is_nanoaod(t) for t in trees):
            return None
        return infer_nano.propose(trees, name)
    finally:
        for handle in handles:
            handle.close()


def _read_layout(url: str, tree_name: str | None, sample_entries: int) -> FileLayout:
    try:
        handle = uproot.open(url)
    except Exception as exc:
        raise InputError(url, f"cannot open as a ROOT file ({type(exc).__name__}: {exc})") from None
    with handle:
        tree_name = tree_name or _only_tree(url, handle)
        try:
            tree = handle[tree_name]
        except Exception:
            raise InputError(url, f"no TTree '{tree_name}'") from None
        stop = min(tree.num_entries, sample_entries)
        branches, skipped, integers = {}, [], {}
        groups: dict[bytes, list[str]] = defaultdict(list)
        for branch in tree.branches:
            interpretation = branch.interpretation
            if isinstance(interpretation, uproot.AsDtype) and interpretation.to_dtype.shape == ():
                dtype = interpretation.to_dtype.newbyteorder("=")
                values = branch.array(entry_stop=stop, library="np")
                is_label = branch.name.startswith("label_") and _is_binary(values)
                branches[branch.name] = f"{'label' if is_label else 'scalar'} {dtype.name}"
            elif isinstance(interpretation, uproot.AsJagged) and isinstance(interpretation.content, uproot.AsDtype):
                dtype = interpretation.content.to_dtype.newbyteorder("=")
                branches[branch.name] = f"vector {dtype.name}"
                array = branch.array(entry_stop=stop)
                counts = ak.to_numpy(ak.num(array, axis=1)).astype(np.int64)
                groups[counts.tobytes()].append(branch.name)
                values, is_label = ak.to_numpy(ak.flatten(array)), False
            else:
                skipped.append(branch.name)
                continue
            small = _small_integers(values) if dtype.kind == "f" and not is_label else None
            if small:
                integers[branch.name] = small
    return FileLayout(tree_name, branches, tuple(tuple(g) for g in groups.values()), tuple(skipped), integers)


def _check_agreement(first_url: str, first: FileLayout, url: str, layout: FileLayout) -> None:
    """Files of one dataset must hold the same tree, branches, types and blocks."""
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
    stems = [os.path.basename(u).removesuffix(".root") for u in urls]
    common = os.path.commonprefix(stems).rstrip("_-.0123456789")  # noqa: RUF071 - a prefix of names, not paths
    return re.sub(r"[^A-Za-z0-9_]", "_", common) or "dataset"


def _only_tree(url: str, handle) -> str:
    trees = sorted({k.split(";")[0] for k, c in handle.classnames().items() if c.startswith("TTree")})
    if len(trees) != 1:
        raise InputError(url, f"{len(trees)} trees found ({', '.join(trees)}); choose one with --tree")
    return trees[0]


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
