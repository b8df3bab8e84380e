"""Which jets a data fraction covers: the one rule for the standardisation (``preprocess.data_fraction``) and
the weights (``--fraction``).

``weaver`` (the default): weaver-core's rule, the first ``max(1, trunc(f × entries))`` entries of every input
file, in input order. Every stored jet records its input entry (``_entry``), so this is exact on sorted
shards too: shards wholly inside the fraction are read as they are, shards wholly outside are not read, and
only the shards that straddle the cut of one of their inputs filter by ``_entry`` (and ``_input``,
a jet's piece). The statistics then equal
weaver-core's on the same files, and reading costs only the fraction.

``random``: a fixed pseudo-random subset of every shard (seeded by its checksum), for inputs whose first
part is not representative (files ordered by pT-hat, say).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from jetstore.errors import SchemaError

MODES = ("weaver", "random")
ALL, NONE, SOME = "all", "none", "some"


class Piece(Protocol):
    """An entry range of one input file in a shard."""

    @property
    def entry_start(self) -> int: ...
    @property
    def entry_stop(self) -> int: ...


class Shard(Protocol):
    """What a fraction reads of a shard (a manifest's ``ShardEntry``): its pieces and their input files."""

    @property
    def name(self) -> str: ...
    @property
    def checksum(self) -> str: ...
    @property
    def pieces(self) -> Sequence[Piece]: ...
    @property
    def sources(self) -> tuple[str, ...]: ...


@dataclass(frozen=True)
class Fraction:
    """A fraction of the jets of a dataset; ``entries``: entries of every input file (weaver mode)."""

    value: float
    mode: str = "weaver"
    entries: Mapping[str, int] | None = None

    def __post_init__(self) -> None:
        if not 0 < self.value <= 1:
            raise SchemaError(f"a data fraction must be in (0, 1], got {self.value}")
        if self.mode not in MODES:
            raise SchemaError(f"fraction mode must be one of {', '.join(MODES)}, got {self.mode!r}")

    def covers(self, shard: Shard) -> str:
        """``all``, ``none`` or ``some`` of the shard's jets (``some``: :meth:`mask` decides per jet)."""
        if self.value >= 1:
            return ALL
        if self.mode == "random":
            return SOME
        cuts = self._cuts(shard)
        if all(p.entry_stop <= cut for p, cut in zip(shard.pieces, cuts, strict=True)):
            return ALL
        return NONE if all(p.entry_start >= cut for p, cut in zip(shard.pieces, cuts, strict=True)) else SOME

    def mask(self, shard: Shard, entries: np.ndarray, inputs: np.ndarray | None = None) -> np.ndarray:
        """Per stored jet of a shard (``entries``: its ``_entry`` column, ``inputs`` its ``_input``: the piece; None
        for one piece): is it in the fraction."""
        if self.mode == "random":
            return np.random.default_rng(int(shard.checksum[:15], 16)).random(len(entries)) < self.value
        cuts = np.asarray(self._cuts(shard), np.int64)
        return np.asarray(entries) < (cuts[inputs] if inputs is not None else cuts[0])

    def _cuts(self, shard: Shard) -> list[int]:
        """The fraction's cut in every piece's input file."""
        cuts = []
        for source in shard.sources:
            total = (self.entries or {}).get(source)
            if total is None:
                raise SchemaError(f"input {source} of shard {shard.name} is not in the manifest's inputs")
            cuts.append(max(1, math.trunc(self.value * total)))
        return cuts
