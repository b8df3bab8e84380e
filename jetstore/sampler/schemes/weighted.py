"""``weighted``: weaver-core's sampling semantics (a jet of weight w is used s·w times per epoch in
expectation), class-stratified in every slot.

Per round, unit u is read with probability ``p_u = min(1, f·s·m_u)`` (``m_u``: its largest row weight; ``f``: the
``read_factor``, by default 1 (what is read is what is kept) where ``jets_per_epoch`` is given and ``"auto"`` for
natural epochs); a row
of weight w of a read unit is kept ``q = s·w / p_u`` times in expectation (``floor(q)`` or ``ceil(q)``), so its
expected multiplicity is exactly s·w. Since shards are sorted by (class, pT), a unit's rows share nearly one
weight: with f = 1, what is read is what is kept. f > 1 reads f times the units, each thinned f times:
finer steps in every (class, pT) cell (epochs much smaller than the data then follow the target as closely
as an i.i.d. draw) for f times the bytes.

Both draws are balanced (systematic sampling) instead of independent coins: the units, ranked by (sample,
class, pT), cover consecutive stretches of length p_u of a line, and a unit is read when a point ``start + k``
(k integer) falls in its stretch; a unit's rows, cell by cell (class, pT bin, eta bin), in pT order within a
cell, likewise. Each unit and row keeps its probability exactly, while every (sample, class, pT) stretch gets
within one unit of its expected number of units, and every cell of a read unit within one row of its expected
rows: an epoch's (class, pT, eta) histogram is as close to the target as an i.i.d. draw of its size, or closer,
where independent coins moved a cell by whole units. The round's start runs over epochs as a Weyl sequence
(``offset + epoch·φ``), so across epochs every unit is read in a share p_u of them to within a few epochs (the
remainder carried from epoch to epoch).

The units of a round are shared among ranks, then among each rank's workers (in proportion to their
batches), class by class: every slot gets its expected share of every (sample, class) stratum's rows, spread
over the whole pT spectrum (shards are sorted by class, then pT), a unit at a cut read by both slots, each
keeping its rows (:mod:`~jetstore.sampler.schemes.shares`). A slot reads its units in the round's random
order with the classes interleaved in proportion to their expected yields, and draws batches at random from
its shuffle buffer. With a ``weights`` block every batch has the target's class composition (within one
jet, running totals exact), drawn from one buffer per class. Every rank yields the same number of batches,
its share of the epoch in whole batches (at least one), split over its workers; a slot whose share runs a
few rows short of a class reads on into the next round, a unit of every stratum first (without weights, at
the natural epoch size, ranks and workers split the jets exactly instead).
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Iterator

import numpy as np

from jetstore.errors import DatasetError
from jetstore.sampler.schemes.base import EpochParams, EpochRequest, EpochShape, Scheme, SlotPlan, UnitRead
from jetstore.sampler.schemes.shares import GOLDEN, Pieces
from jetstore.sampler.units import UnitTable

LOG = logging.getLogger(__name__)
MAX_EMPTY_ROUNDS = 64
ROUND, RANKS, WORKERS, START = 0x5EED, 0xDEA1, 0xDEA2, 0x57A7  # tags separating the random streams
AUTO_UNITS, AUTO_MAX = 2.0, 16.0  # read_factor="auto": the fewest units per (sample, class, pT bin), the most factor
AUTO_STEPS = 40  # bisection steps solving for a stratum's factor (AUTO_MAX / 2**40 apart)
WHOLE = 1e-6  # units read per round this close to a whole number are that number


def plan(units: UnitTable, params: EpochParams, rank: int, worker: int) -> SlotPlan:
    per_rank = batches(units, params)
    quota = int(worker_batches(per_rank, params.num_workers)[worker])
    totals = units.stratum_totals()
    fractions = totals / totals.sum() if params.stratify else None

    def reads() -> Iterator[UnitRead]:
        if _exact(params):
            yield from exact_reads(units, params, per_rank, rank, worker)
        empty = 0
        regular = math.ceil(params.epoch_rounds)  # rounds past these are read only by a slot short of a class
        for round_ in itertools.count(1 if _exact(params) else 0):
            mine = slot_units(units, params, round_, rank, worker, per_rank, tail=round_ >= regular)
            empty = 0 if mine else empty + 1
            if empty > MAX_EMPTY_ROUNDS:
                raise DatasetError("no jets can be sampled: every unit has weight 0 (check the selection, the "
                                   "reweighting classes and bins)")
            yield from mine

    return SlotPlan(reads, quota, weighted=True, shuffle=True, fractions=fractions)


def batches(units: UnitTable, params: EpochParams) -> int:
    """Batches every rank yields: its share of the epoch's expected jets (``jets_per_epoch``, or the natural
    weighted yield) in whole batches, at least one. Without weights at the natural size, where every
    jet is kept exactly once, the poorest rank's exact supply."""
    if _exact(params):
        chosen, _, yields = sample_round(units, params, 0)
        ranks = deal(units.rank[chosen], units.dominant_strata(chosen, yields), units.n_strata, params.num_ranks,
                     _rng(params, 0, RANKS))
        jets = np.bincount(ranks, weights=yields.sum(axis=1), minlength=params.num_ranks).min()
    else:
        jets = params.scale * params.epoch_rounds * float(units.expected.sum()) / params.num_ranks
    return max(1, int(jets / params.batch_size + 1e-9))  # jets_per_epoch / Σw · Σw is not always exact


def worker_batches(per_rank: int, workers: int) -> np.ndarray:
    """Batches of each of a rank's workers: ``per_rank // workers``, one more for the first ``per_rank % workers``."""
    return per_rank // workers + (np.arange(workers) < per_rank % workers).astype(np.int64)


def exact_reads(units: UnitTable, params: EpochParams, per_rank: int, rank: int, worker: int) -> Iterator[UnitRead]:
    """Without weights at the natural epoch size every selected jet is kept once, so a rank's supply is
    known exactly: its units (classes interleaved) are cut among its workers where each worker's batches
    end, a unit at a cut read by both, each keeping its side. No jet comes twice in an epoch."""
    chosen, probability, yields = sample_round(units, params, 0)
    dominant = units.dominant_strata(chosen, yields)
    mine = np.nonzero(deal(units.rank[chosen], dominant, units.n_strata, params.num_ranks,
                           _rng(params, 0, RANKS)) == rank)[0]
    mine = mine[np.argsort(_positions(yields[mine].sum(axis=1), dominant[mine]), kind="stable")]
    rows = np.rint(yields[mine].sum(axis=1)).astype(np.int64)
    ends = np.cumsum(rows)
    starts = ends - rows
    workers, size = params.num_workers, params.batch_size
    quotas = worker_batches(per_rank, workers).tolist()
    lo = sum(quotas[:worker]) * size
    hi = lo + quotas[worker] * size
    for i, index in enumerate(mine.tolist()):
        a, b = max(lo, int(starts[i])), min(hi, int(ends[i]))
        if a < b:
            yield UnitRead(0, int(chosen[index]), float(probability[index]), float(b - a),
                           (a - int(starts[i]), b - int(starts[i])))


def _exact(params: EpochParams) -> bool:
    """Is every selected jet kept exactly once (no weights, natural epoch size)?"""
    return not params.stratify and params.scale == 1.0 and params.epoch_rounds == 1.0


def sample_round(units: UnitTable, params: EpochParams, round_: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The units read in a round (shuffled), their read probabilities and expected yields per class."""
    probability = np.minimum(1.0, params.read_factor * params.scale * units.max_weight)
    start = (np.random.default_rng([params.seed, round_, START]).random() + params.epoch * GOLDEN) % 1.0
    chosen = _rng(params, round_, ROUND).permutation(balanced(probability, units.order, start))
    p = probability[chosen]
    yields = params.scale * units.expected[chosen] / np.maximum(p, 1e-300)[:, None]
    return chosen, p, yields


def balanced(probability: np.ndarray, order: np.ndarray, start: float) -> np.ndarray:
    """Systematic sampling: the units, in ``order``, cover stretches of their ``probability`` along a line; those
    holding a point ``start + k`` are chosen (every unit with its probability; every run of units in the order
    within one of its expected number). Returns the chosen units, in index order."""
    p = probability[order]
    end = np.cumsum(p)
    hit = (p >= 1.0) | (np.floor(end - start) > np.floor(end - p - start))
    return np.sort(order[hit])


def slot_units(units: UnitTable, params: EpochParams, round_: int, rank: int, worker: int, per_rank: int,
               tail: bool = False) -> list[UnitRead]:
    """The reads of one slot in a round, in reading order: its pieces of the round's units
    (:mod:`~jetstore.sampler.schemes.shares`: the rank's share of every stratum, then the worker's share of the
    rank's, in proportion to the workers' batches of the rank's ``per_rank``). Classes are interleaved in
    proportion to their expected rows; in a ``tail`` round (one read past the epoch's rounds, by a slot a few
    rows short of some class) a unit of every stratum comes first, then a second of each, and so on: the class
    it lacks comes within a few units."""
    chosen, probability, yields = sample_round(units, params, round_)
    pieces = Pieces.of(yields, units.sample[chosen] * units.n_classes)
    strata = units.n_strata
    pieces = pieces.share(units.rank[chosen][pieces.index], strata, np.ones(params.num_ranks), rank,
                          _rng(params, round_, RANKS))
    pieces = pieces.share(units.rank[chosen][pieces.index], strata,
                          worker_batches(per_rank, params.num_workers), worker,
                          _rng(params, round_, WORKERS, rank))
    mine, inverse = np.unique(pieces.index, return_inverse=True)
    rows = np.bincount(inverse, weights=pieces.rows, minlength=len(mine))
    dominant = units.dominant_strata(chosen[mine], yields[mine])
    positions = _positions(rows, dominant)
    order = np.argsort(positions, kind="stable")  # the round's order
    if tail:
        nth = np.empty(len(order), np.int64)  # each unit's place among its stratum's, in the round's order
        for stratum in np.unique(dominant).tolist():
            members = order[dominant[order] == stratum]
            nth[members] = np.arange(len(members))
        order = np.lexsort((positions, nth))
    counts = np.bincount(inverse, minlength=len(mine))
    cut = np.bincount(inverse, weights=(pieces.lo != 0) | (pieces.hi != 1), minlength=len(mine)) > 0
    partial = cut | (counts < (yields[mine] > 0).sum(axis=1))  # a piece cut, or a class not this slot's
    own = np.split(np.argsort(inverse, kind="stable"), np.cumsum(counts)[:-1])  # each unit's pieces
    reads = []
    for k in order.tolist():
        shares = tuple((int(pieces.stratum[i]), float(pieces.lo[i]), float(pieces.hi[i]))
                       for i in own[k].tolist()) if partial[k] else None
        reads.append(UnitRead(round_, int(chosen[mine[k]]), float(probability[mine[k]]), float(rows[k]),
                              shares=shares))
    return reads


def deal(rank: np.ndarray, dominant: np.ndarray, strata: int, parts: int, rng: np.random.Generator) -> np.ndarray:
    """Part of every unit (given by its ``rank`` in the units' (sample, class, pT) order): per dominant (sample,
    class) stratum, round robin in that order from a random offset, so every part gets every stratum spread over
    the whole pT spectrum."""
    if parts == 1 or not len(dominant):
        return np.zeros(len(dominant), np.int64)
    offsets = rng.integers(parts, size=strata)
    order = np.argsort(rank, kind="stable")
    out = np.empty(len(rank), np.int64)
    for c in np.unique(dominant):
        members = order[dominant[order] == c]
        out[members] = (np.arange(len(members)) + offsets[c]) % parts
    return out


def _positions(total: np.ndarray, dominant: np.ndarray) -> np.ndarray:
    """Every unit's place in (0, 1) along its dominant stratum: the midpoint of its run of the stratum's total
    expected yield, in the given order."""
    position = np.zeros(len(total))
    if not len(total):
        return position
    for c in np.unique(dominant):
        members = np.nonzero(dominant == c)[0]
        weight = total[members]
        whole = weight.sum()
        if whole > 0:
            position[members] = (np.cumsum(weight) - weight / 2) / whole
        else:
            position[members] = (np.arange(len(members)) + 0.5) / len(members)
    return position


def _rng(params: EpochParams, round_: int, *tags: int) -> np.random.Generator:
    return np.random.default_rng([params.seed, params.epoch, round_, *tags])


def epoch(units: UnitTable, request: EpochRequest) -> EpochShape:
    """``jets_per_epoch`` rescales the natural weighted epoch (Σw jets); a round gives no jet more than
    ``max_repeats`` copies (bounding the pools), so larger epochs span several whole rounds, every jet scaled
    alike (a part of a round, read in random order, would move cells by whole units of up-sampled jets).
    A natural epoch smaller than a batch per rank is replaced by one the size of the data, with a warning."""
    total = float(units.expected.sum())
    if total <= 0:
        raise DatasetError("no jet has a non-zero sampling weight (check the selection, the reweighting classes "
                           "and bins)")
    jets = request.jets_per_epoch
    if jets is None and total < request.batch_size * request.world_size:
        jets = request.n_jets
        LOG.warning("the natural weighted epoch holds %.0f jets, less than a batch per rank (%d × %d); epochs hold "
                    "%d jets instead (the data's size): set jets_per_epoch to choose", total, request.world_size,
                    request.batch_size, jets)
    scale = jets / total if jets else 1.0
    rounds = max(1, math.ceil(scale * float(units.max_weight.max(initial=0.0)) / request.max_repeats - 1e-9))
    factor = request.read_factor
    if factor is None:  # a natural epoch is weaver's rejection-sampled one: its mix that of a draw from all the data
        factor = "auto" if request.jets_per_epoch is None else 1.0
    chosen = auto_read_factors(units, scale / rounds) if factor == "auto" else float(factor)
    return EpochShape(scale / rounds, rounds, chosen)  # whole rounds: an epoch never ends in a part of one


def auto_read_factors(units: UnitTable, scale: float) -> np.ndarray:
    """``read_factor="auto"``, per unit: its (sample, class, pT bin) stratum's units are read often enough that the
    stratum reads a whole number of them per round, at least ``AUTO_UNITS`` (all of them, if it has fewer; at most
    ``AUTO_MAX`` times as often as with 1), each thinned as much. A unit gives its bin ~100-250 rows at once: with
    fewer units, or a fraction of one left to chance, an epoch's histogram is coarser there than an i.i.d. draw's;
    a whole number of units, a run of the balanced draw's line, is read every round (give or take one at the
    bin's edges). The factor solves ``Σ min(1, f·s·m_u) = target`` per stratum (by bisection: units read whole cap
    the sum)."""
    need = scale * units.max_weight
    strata = int(units.bin.max(initial=-1)) + 1

    def reads(factor: np.ndarray) -> np.ndarray:
        return np.bincount(units.bin, weights=np.minimum(1.0, factor[units.bin] * need), minlength=strata)

    natural = reads(np.ones(strata))
    whole = np.maximum(AUTO_UNITS, np.ceil(natural - WHOLE))
    target = np.minimum(whole, np.bincount(units.bin, weights=need > 0, minlength=strata))
    low, high = np.ones(strata), np.full(strata, AUTO_MAX)
    for _ in range(AUTO_STEPS):
        middle = (low + high) / 2
        short = reads(middle) < target
        low, high = np.where(short, middle, low), np.where(short, high, middle)
    return np.where(natural >= target - WHOLE, 1.0, high)[units.bin]


SCHEME = Scheme("weighted", plan, batches, epoch, weighted=True)
