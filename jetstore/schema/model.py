"""The dataset schema as small frozen values: which branches become jet columns, labels and node blocks."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import xxhash

from jetstore.schema.expression import Expression

SORT_BY_LABEL = "label"  # in ``sort_by``: the class index (position of the set one-hot label)
STORAGE_DTYPES = frozenset(
    ["bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "float16", "float32", "float64"]
)


@dataclass(frozen=True)
class Column:
    """One stored column: read from ``branch`` or computed from ``expr``; ``dtype`` is the storage type.

    ``dtype`` None means "keep the source branch's type" (jet columns and labels only).
    """

    name: str
    dtype: str | None = None
    branch: str | None = None
    expr: Expression | None = field(default=None, compare=False)

    @property
    def inputs(self) -> frozenset[str]:
        """Branch names this column reads."""
        return self.expr.names if self.expr is not None else frozenset({self.branch or self.name})

    def to_dict(self) -> dict:
        out: dict = {"name": self.name}
        if self.expr is not None:
            out["expr"] = self.expr.source
        elif self.branch and self.branch != self.name:
            out["branch"] = self.branch
        if self.dtype:
            out["dtype"] = self.dtype
        return out


JET_INDEX = "jet_index"  # per-event inputs: a jet's position in its event's collection (usable in expressions)


@dataclass(frozen=True)
class Link:
    """Per-event inputs (NanoAOD): how a block's nodes are found for each jet of the jet collection.

    Either a link table (``jet``: its branch of jet indices, ``node``: its branch of indices into
    ``collection``; the table's other branches are per-link features), or per-jet index branches
    (``indices``, e.g. ``Jet_svIdx1``, ``Jet_svIdx2``; -1 means none). A jet's nodes are ordered by
    ``order_by`` (default ``<collection>_pt``), descending unless ``ascending``."""

    collection: str
    jet: str | None = None
    node: str | None = None
    indices: tuple[str, ...] = ()
    order_by: str | None = None
    ascending: bool = False

    @property
    def table(self) -> str | None:
        """The link table's branch prefix (``JetPFCands`` for ``JetPFCands_jetIdx``)."""
        return self.jet.split("_", 1)[0] if self.jet else None

    @property
    def order_branch(self) -> str:
        return self.order_by or f"{self.collection}_pt"

    @property
    def branches(self) -> frozenset[str]:
        """The index branches, the ordering branch and the node collection's counter."""
        names = {self.order_branch, f"n{self.collection}", *self.indices}
        names |= {b for b in (self.jet, self.node) if b}
        return frozenset(names)

    def to_dict(self) -> dict:
        out: dict = {"collection": self.collection}
        if self.jet:
            out.update(jet=self.jet, node=self.node)
        if self.indices:
            out["indices"] = list(self.indices)
        if self.order_by:
            out["order_by"] = self.order_by
        if self.ascending:
            out["ascending"] = True
        return out


@dataclass(frozen=True)
class Block:
    """A node type (PF candidates, secondary vertices, ...): per-jet variable-length lists of features.
    ``link``: for per-event inputs, how the nodes of each jet are found."""

    name: str
    features: tuple[Column, ...]
    link: Link | None = None

    def to_dict(self) -> dict:
        out: dict = {"features": [f.to_dict() for f in self.features]}
        if self.link is not None:
            out["link"] = self.link.to_dict()
        return out


@dataclass(frozen=True)
class Schema:
    """What to read from an input file (a ROOT tree, a Parquet file, an HDF5 file) and how to store it.
    ``tree``: the ROOT tree (other inputs have none); ``source``: the input kind every file must be (None: each
    file's kind is told by its content). ``collection`` set: per-event input (NanoAOD), each element of that
    jagged collection (e.g. ``Jet``) is a jet; event-level branches repeat for its jets."""

    name: str
    tree: str | None
    jets: tuple[Column, ...]
    labels: tuple[Column, ...]
    blocks: tuple[Block, ...]
    selection: Expression | None = field(default=None, compare=False)
    sort_by: tuple[str, ...] = ()
    collection: str | None = None
    source: str | None = None

    @property
    def jet_columns(self) -> tuple[Column, ...]:
        """Jet-level columns in storage order: jets then labels."""
        return self.jets + self.labels

    @property
    def label_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.labels)

    @property
    def branches(self) -> frozenset[str]:
        """Every input branch the conversion reads."""
        needed: set[str] = set(self.selection.names) if self.selection else set()
        for column in self.jet_columns:
            needed |= column.inputs
        for block in self.blocks:
            for feature in block.features:
                needed |= feature.inputs
            if block.link is not None:
                needed |= block.link.branches
        if self.collection:
            needed.discard(JET_INDEX)
            needed.add(f"n{self.collection}")
        return frozenset(needed)

    def block(self, name: str) -> Block:
        for block in self.blocks:
            if block.name == name:
                return block
        raise KeyError(name)

    def to_dict(self) -> dict:
        out: dict = {"name": self.name}
        if self.source:
            out["source"] = self.source
        if self.tree:
            out["tree"] = self.tree
        if self.collection:
            out["collection"] = self.collection
        if self.selection is not None:
            out["selection"] = self.selection.source
        out["jets"] = [c.to_dict() for c in self.jets]
        out["labels"] = [c.to_dict() for c in self.labels]
        out["blocks"] = {b.name: b.to_dict() for b in self.blocks}
        if self.sort_by:
            out["sort_by"] = list(self.sort_by)
        return out

    @property
    def hash(self) -> str:
        """Stable content hash (xxh3-64 of the canonical JSON form)."""
        return xxhash.xxh3_64_hexdigest(json.dumps(self.to_dict(), sort_keys=True).encode())


def feature_dtype(column: Column) -> np.dtype:
    """Storage dtype of a block feature (float32 unless opted into another)."""
    return np.dtype(column.dtype or "float32")
