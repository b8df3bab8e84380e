"""``jetstore schema infer`` for CMS NanoAOD / PFNano files (one entry per event, ``n<Collection>`` counters,
``<Collection>_<field>`` branches, link tables ``<Table>_jetIdx`` + ``<Table>_<node>Idx``).

A bundled per-event schema whose every branch the files hold is proposed as it is (``nano_ak4`` for PFNano
AK4, ``nano_ak8`` for NanoAOD v15 AK8). Otherwise a generic one: the ``Jet`` collection (``FatJet`` when only it
has link tables), its numeric fields as jet columns with the event identity, flavour labels when the jets carry
``hadronFlavour``, and one block per link table with the node collection's fields, the table's per-link fields
and Δη, Δφ to the jet."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from importlib import resources
from typing import Any

from jetstore.conversion.inputs import BranchType
from jetstore.schema.load import schema_from_dict, yaml_load

BUNDLED = ("nano_ak4", "nano_ak8")
EVENT_IDENTITY = ("run", "luminosityBlock", "event")


def is_nanoaod(keys: set[str]) -> bool:
    """NanoAOD-like branch names: a jagged ``Jet`` or ``FatJet`` collection with its counter, and event
    identifiers."""
    return "event" in keys and any({f"n{c}", f"{c}_pt"} <= keys for c in ("Jet", "FatJet"))


def propose(files: Sequence[Mapping[str, BranchType]], tree: str | None, name: str | None) -> dict[str, Any]:
    """A per-event schema (plain data) for NanoAOD files (their branches; ``tree``: the ROOT tree, if any)."""
    common = set.intersection(*(set(branches) for branches in files))
    for bundled in BUNDLED:
        data = yaml_load((resources.files("jetstore.schema.bundled") / f"{bundled}.yaml").read_text(), bundled)
        if schema_from_dict(data, bundled).branches <= common:
            return {**data, "name": name or bundled}
    return _generic(files[0], tree, common, name)


def _generic(branches: Mapping[str, BranchType], tree: str | None, keys: set[str], name: str | None
             ) -> dict[str, Any]:
    tables = {k.removesuffix("_jetIdx") for k in keys if k.endswith("_jetIdx")}
    linked = "Jet_pt" in keys and any(t.startswith("Jet") for t in tables)
    collection = "Jet" if linked or "FatJet_pt" not in keys else "FatJet"
    numeric = {k for k in keys if branches[k].numbers or branches[k].lists}
    jets: list[Any] = [n if n != "event" else {"name": "event", "dtype": "int64"} for n in EVENT_IDENTITY
                       if n in keys]
    jets.append({"name": "ijet", "expr": "jet_index", "dtype": "int16"})
    jets += sorted(k for k in numeric if k.startswith(f"{collection}_") and "Idx" not in k)
    labels = _flavour_labels(collection, keys)
    blocks: dict[str, Any] = {}
    for table in sorted(t for t in tables if t.startswith(collection) and not t[len(collection):].startswith("_")):
        node_branch = next((k for k in sorted(keys) if re.fullmatch(rf"{table}_\w+Idx", k) and k != f"{table}_jetIdx"),
                           None)
        nodes = _node_collection(node_branch, table, keys) if node_branch else None
        if nodes is None:
            continue
        features: list[Any] = sorted(k for k in numeric if k.startswith(f"{nodes}_"))
        features += sorted(k for k in numeric if k.startswith(f"{table}_") and not k.endswith("Idx"))
        if {f"{nodes}_eta", f"{nodes}_phi"} <= keys:
            features += [{"name": f"{nodes}_deta", "expr": f"{nodes}_eta - {collection}_eta"},
                         {"name": f"{nodes}_dphi",
                          "expr": f"np.remainder({nodes}_phi - {collection}_phi + np.pi, 2 * np.pi) - np.pi"}]
        if f"{nodes}_pt" in keys:  # the default node order
            link = {"collection": nodes, "jet": f"{table}_jetIdx", "node": node_branch}
            blocks[nodes.lower()] = {"link": link, "features": features}
    schema: dict[str, Any] = {"name": name or f"nano_{collection.lower()}", **({"tree": tree} if tree else {}),
                              "collection": collection, "jets": jets, "labels": labels, "blocks": blocks}
    schema["sort_by"] = (["label"] if labels else []) + [f"{collection}_pt"]
    return schema


def _flavour_labels(collection: str, keys: set[str]) -> list[dict[str, str]]:
    hadron, parton = f"{collection}_hadronFlavour", f"{collection}_partonFlavour"
    if hadron not in keys:
        return []
    labels = [("label_b", f"{hadron} == 5"), ("label_c", f"{hadron} == 4")]
    if parton in keys:
        light = f"({hadron} == 0) & (np.abs({parton}) >= 1) & (np.abs({parton}) <= 5)"
        labels += [("label_uds", light), ("label_g", f"({hadron} == 0) & ({parton} == 21)"),
                   ("label_undef", f"({hadron} == 0) & ((np.abs({parton}) > 5) | ({parton} == 0)) & "
                                   f"({parton} != 21)")]
    else:
        labels.append(("label_light", f"{hadron} == 0"))
    return [{"name": n, "expr": e, "dtype": "int8"} for n, e in labels]


def _node_collection(node_branch: str, table: str, keys: set[str]) -> str | None:
    """``JetPFCands_pFCandsIdx`` → ``PFCands``: the collection whose counter matches the index's stem."""
    stem = node_branch.removeprefix(f"{table}_").removesuffix("Idx").lower()
    return next((k[1:] for k in sorted(keys) if k.startswith("n") and k[1:].lower() == stem), None)
