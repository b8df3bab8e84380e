"""``jetstore schema infer``: propose a schema for an unseen ROOT file.

Scalar branches become jet columns, one-hot ``label_*`` branches become labels, and ``std::vector``
branches are grouped into node blocks: branches of one block have the same multiplicity per jet, and
the block is named after the group's common prefix (``jet_pfcand_*`` → ``pfcand``, ``part_*`` → ``part``).
"""

from __future__ import annotations

import os
from collections import defaultdict
from typing import Any

import awkward as ak
import numpy as np
import uproot

from jetstore.errors import InputError

SAMPLE_ENTRIES = 5000


def infer_schema(url: str, tree_name: str | None = None,
                 sample_entries: int = SAMPLE_ENTRIES) -> tuple[dict[str, Any], list[str]]:
    """Return schema data (ready for YAML) describing the tree in ``url``, and the branches left out."""
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
        jets, labels, skipped = [], [], []
        groups: dict[bytes, list[str]] = defaultdict(list)
        for branch in tree.branches:
            interpretation = branch.interpretation
            if isinstance(interpretation, uproot.AsDtype) and interpretation.to_dtype.shape == ():
                if branch.name.startswith("label_") and _is_binary(branch.array(entry_stop=stop, library="np")):
                    labels.append(branch.name)
                else:
                    jets.append(branch.name)
            elif isinstance(interpretation, uproot.AsJagged) and isinstance(interpretation.content, uproot.AsDtype):
                counts = ak.to_numpy(ak.num(branch.array(entry_stop=stop), axis=1)).astype(np.int64)
                groups[counts.tobytes()].append(branch.name)
            else:
                skipped.append(branch.name)
    blocks = {}
    for index, names in enumerate(groups.values()):
        blocks[_block_name(names, index, blocks)] = {"features": names}
    schema: dict[str, Any] = {"name": os.path.basename(url).removesuffix(".root"), "tree": tree_name,
                              "jets": jets, "labels": labels, "blocks": blocks}
    return schema, skipped


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
