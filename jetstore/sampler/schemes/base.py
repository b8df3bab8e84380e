"""What a sampling scheme is: a pure planning function of the units, the seed, the epoch and the world.

A scheme decides, for one slot (rank × DataLoader worker) and one epoch, which units to read in which
order, how rows of a read unit are kept, how many batches the slot yields and how classes are mixed in
each batch. It reads nothing; :class:`jetstore.sampler.stream.SlotStream` executes the plan.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from jetstore.sampler.units import UnitTable


@dataclass(frozen=True)
class EpochParams:
    """Everything a plan depends on besides the units (identical on every rank and worker)."""

    seed: int
    epoch: int
    batch_size: int
    num_ranks: int
    num_workers: int
    scale: float = 1.0          # per sampling round: expected deliveries of a jet of weight w are scale·w
    epoch_rounds: float = 1.0   # rounds an epoch spans (jets_per_epoch beyond max_repeats copies per round)
    stratify: bool = True       # every batch has the class composition of the weights' target
    read_factor: float | np.ndarray = 1.0  # units are read this many times as often as needed (one factor, or
    # one per unit), their rows thinned as much


@dataclass(frozen=True)
class UnitRead:
    """One unit to read: its sampling round, read probability (kept rows are re-weighted by it) and the
    rows it is expected to give (which bounds how far ahead the stream reads)."""

    round: int
    unit: int
    probability: float = 1.0
    expected: float = 0.0
    part: tuple[int, int] | None = None  # only these kept rows (by position) belong to the slot
    shares: tuple[tuple[int, float, float], ...] | None = None  # only rows of these (stratum, lo, hi): see shares.py


@dataclass(frozen=True)
class SlotPlan:
    """One slot's epoch.

    ``reads``: the units in reading order (lazily: weighted plans run on over further rounds when needed).
    ``quota``: batches the slot yields (None: until its units run out, the last batch short).
    ``weighted``: rows are kept by weight (else every selected row once).
    ``shuffle``: batches draw rows at random from a shuffle buffer (else in reading order).
    ``fractions``: the class composition of every batch (None: as the rows come).
    """

    reads: Callable[[], Iterator[UnitRead]]
    quota: int | None
    weighted: bool
    shuffle: bool
    fractions: np.ndarray | None = None


@dataclass(frozen=True)
class EpochRequest:
    """What the user asked of an epoch (a scheme turns it into its :class:`EpochShape`)."""

    jets_per_epoch: int | None
    max_repeats: int
    batch_size: int
    world_size: int
    n_jets: int  # stored jets of the data
    read_factor: float | str | None = None  # a number, "auto" (the scheme chooses), or None (the scheme's default)


@dataclass(frozen=True)
class EpochShape:
    """How a scheme draws an epoch: expected deliveries of a jet of weight w per round are ``scale·w``, over
    ``rounds`` rounds, reading ``read_factor`` times the units needed (each thinned as much; one factor, or one per
    unit)."""

    scale: float = 1.0
    rounds: float = 1.0
    read_factor: float | np.ndarray = 1.0


@dataclass(frozen=True)
class Scheme:
    """A registered scheme.

    ``plan(units, params, rank, worker)``: one slot's epoch. ``batches(units, params)``: the batches every rank
    yields per epoch (None when not fixed in advance). ``epoch(units, request)``: the epoch's shape from what
    the user asked (a scheme refuses what it cannot honour). ``weighted``: rows are kept by their sampling
    weight, so the config's weight tables (from ``jetstore stats``) are needed when it has a ``weights`` block.
    """

    name: str
    plan: Callable[[UnitTable, EpochParams, int, int], SlotPlan]
    batches: Callable[[UnitTable, EpochParams], int | None]
    epoch: Callable[[UnitTable, EpochRequest], EpochShape]
    weighted: bool
