"""Per-event inputs (CMS NanoAOD / PFNano): one tree entry per event, a jagged jet collection, node collections
and the link tables (or per-jet index branches) that say which nodes belong to which jet. Vectorised with numpy
and awkward (no loop over events or jets), this turns a piece of such branches into the per-jet arrays a per-jet
ntuple would hold, so the rest of the conversion (selection, expressions, casts) is the same for both.

Each name an expression can use becomes one value per jet (jet-collection and event-level branches, and
``jet_index``, the jet's position in its event) or one list per jet (a block's node-collection and link-table
branches, in the block's order)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import awkward as ak
import numpy as np

from jetstore.errors import InputError
from jetstore.model.table import offsets_of
from jetstore.schema.model import JET_INDEX, Block, Link, Schema


@dataclass(frozen=True)
class BranchKind:
    """How a branch of a per-event tree relates to the jets: ``jet``, ``event``, or a block's ``node`` /
    ``link`` branch."""

    kind: str
    block: str | None = None


def branch_kind(schema: Schema, name: str) -> BranchKind:
    """Classify ``name`` by its collection prefix (NanoAOD's ``<Collection>_<field>`` naming)."""
    prefix = name.split("_", 1)[0]
    if prefix == schema.collection:
        return BranchKind("jet")
    for block in schema.blocks:
        link = block.link
        assert link is not None
        if prefix == link.collection:
            return BranchKind("node", block.name)
        if link.table and prefix == link.table:
            return BranchKind("link", block.name)
    return BranchKind("event")


def explode(url: str, schema: Schema, arrays: Mapping[str, ak.Array], first_entry: int
            ) -> tuple[dict[str, ak.Array | np.ndarray], np.ndarray]:
    """Per-jet arrays from one piece of per-event branches (entries from ``first_entry``), and each jet's
    event entry number."""
    collection = schema.collection
    assert collection is not None
    events = _Events(url, first_entry, _counts(arrays, f"n{collection}"))
    out: dict[str, ak.Array | np.ndarray] = {JET_INDEX: events.jet_index}
    kinds = {name: branch_kind(schema, name) for name in arrays}
    for name, kind in kinds.items():
        if kind.kind == "jet":
            out[name] = _flat(url, arrays[name], name, events.jet_counts)
        elif kind.kind == "event":
            out[name] = np.asarray(arrays[name])[events.event_of_jet]
    for block in schema.blocks:
        names = {kind: [n for n, k in kinds.items() if k.block == block.name and k.kind == kind]
                 for kind in ("node", "link")}
        out.update(_block_lists(block, collection, arrays, names, events))
    return out, first_entry + events.event_of_jet


class _Events:
    """The jets of one piece of events: per-event counts and offsets, each jet's event and position in it."""

    def __init__(self, url: str, first_entry: int, jet_counts: np.ndarray):
        self.url, self.first_entry, self.jet_counts = url, first_entry, jet_counts
        self.jet_offsets = offsets_of(jet_counts)
        self.event_of_jet = np.repeat(np.arange(len(jet_counts)), jet_counts)
        self.jet_index = np.arange(len(self.event_of_jet)) - self.jet_offsets[self.event_of_jet]

    @property
    def n_jets(self) -> int:
        return len(self.event_of_jet)


def _block_lists(block: Block, collection: str, arrays: Mapping[str, ak.Array], names: dict[str, list[str]],
                 events: _Events) -> dict[str, ak.Array]:
    """The block's node and link branches as one list per jet, ordered by ``link.order_branch``."""
    link = block.link
    assert link is not None
    url = events.url
    node_counts = _counts(arrays, f"n{link.collection}")
    if link.jet is not None:
        global_jet, node, event, link_rows = _table_links(link, collection, arrays, node_counts, events)
    else:
        global_jet, node, event = _index_links(link, arrays, node_counts, events)
        link_rows = None
    global_node = offsets_of(node_counts)[event] + node
    key = _flat(url, arrays[link.order_branch], link.order_branch, node_counts)[global_node].astype(np.float64)
    order = np.lexsort((key if link.ascending else -key, global_jet))  # by jet, then by the ordering key
    counts = np.bincount(global_jet[order], minlength=events.n_jets)
    out = {}
    for name in names["node"]:
        out[name] = ak.unflatten(_flat(url, arrays[name], name, node_counts)[global_node[order]], counts)
    for name in names["link"]:  # only link-table blocks have link branches
        assert link_rows is not None and link.jet is not None
        values = _flat(url, arrays[name], name, ak.to_numpy(ak.num(arrays[link.jet], axis=1)))
        out[name] = ak.unflatten(values[link_rows[order]], counts)
    return out


def _table_links(link: Link, collection: str, arrays: Mapping[str, ak.Array], node_counts: np.ndarray,
                 events: _Events) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A link table's links: each one's jet (global index), node (index in its event) and event, and the
    table rows kept. Links with a -1 index (the partner was not stored: NanoAOD's convention) are dropped."""
    assert link.jet is not None and link.node is not None
    link_counts = ak.to_numpy(ak.num(arrays[link.jet], axis=1))
    jet, node = _flat(events.url, arrays[link.jet], link.jet), _flat(events.url, arrays[link.node], link.node,
                                                                    link_counts)
    kept = np.flatnonzero((jet >= 0) & (node >= 0))
    event = np.repeat(np.arange(len(link_counts)), link_counts)[kept]
    jet = _checked(events, jet[kept], link.jet, events.jet_counts, event, collection)
    node = _checked(events, node[kept], link.node, node_counts, event, link.collection)
    return events.jet_offsets[event] + jet, node, event, kept


def _index_links(link: Link, arrays: Mapping[str, ak.Array], node_counts: np.ndarray, events: _Events
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-jet index branches' links (-1: none): each one's jet (global index), node and event."""
    index = np.stack([_flat(events.url, arrays[name], name, events.jet_counts) for name in link.indices],
                     axis=1).astype(np.int64)
    present = index >= 0
    for k, name in enumerate(link.indices):
        rows = present[:, k]
        _checked(events, index[rows, k], name, node_counts, events.event_of_jet[rows], link.collection)
    jet = np.repeat(np.arange(events.n_jets), index.shape[1])[present.ravel()]
    return jet, index.ravel()[present.ravel()], events.event_of_jet[jet]


def _checked(events: _Events, index: np.ndarray, branch: str, sizes: np.ndarray, event: np.ndarray,
             collection: str) -> np.ndarray:
    """``index`` (one per link, in event ``event``) must point inside its event's collection."""
    bad = index >= sizes[event]
    if bad.any():
        at = int(np.argmax(bad))
        where = events.first_entry + int(event[at])
        raise InputError(events.url, f"event {where}: {branch} = {int(index[at])} points outside the {collection} "
                                     f"collection ({int(sizes[event[at]])} entries in that event)")
    return index.astype(np.int64)


def _counts(arrays: Mapping[str, ak.Array], name: str) -> np.ndarray:
    return np.asarray(arrays[name]).astype(np.int64)


def _flat(url: str, values: ak.Array, name: str, counts: np.ndarray | None = None) -> np.ndarray:
    """The flat content of a jagged per-event branch (checked against its collection's counts)."""
    if values.ndim != 2:
        raise InputError(url, f"branch '{name}' is not one list per event")
    if counts is not None and not np.array_equal(ak.to_numpy(ak.num(values, axis=1)), counts):
        raise InputError(url, f"branch '{name}' does not have one entry per element of its collection")
    return ak.to_numpy(ak.flatten(values, axis=1))
