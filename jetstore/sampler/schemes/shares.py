"""Sharing a round's units among parts (ranks, or a rank's workers) so that every part gets its expected share of
every stratum, spread over the whole pT spectrum.

Dealing whole units round robin leaves a part up to a unit short of its share of a stratum (with a rare class
up-sampled into a handful of units of thousands of rows each, a part can get none), and the minor classes of a
unit at a class boundary go whole to one part. A part short of a class reads on into the next round, every
class's units, until one of that class comes: with 2 DataLoader workers a full epoch read 1.75× the units of one.

Here a unit gives one piece per stratum it holds rows of. Each stratum's pieces are put in the order of a
golden-ratio sequence over their pT order from a random offset (piece k at place ``offset + k·φ mod 1``: any run
of consecutive pieces spans the whole pT range evenly), their expected rows laid end to end along a line, and
the line cut at the parts' shares. A piece at a cut is read by both parts, each keeping the rows of its side: a
unit's rows have places spread evenly over [0, 1) (:func:`places`, the same sequence over the unit's rows, which
lie in (class, pT) order), and a piece covering ``[lo, hi)`` keeps the stratum's rows placed there (whole rows:
every row, with all its copies, in exactly one part; both sides compute a cut from the same numbers, so they
agree to the bit).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

GOLDEN = (5 ** 0.5 - 1) / 2  # φ - 1: the step of the sequences below (and of the rounds' starts over epochs)


@dataclass(frozen=True)
class Pieces:
    """Pieces of a round's units, one per (unit, stratum): unit ``index`` (into the round's units), the rows of
    ``stratum`` placed in ``[lo, hi)``, the rows the piece is expected to give (``rows``) and the unit's whole
    expected rows of that stratum (``total``)."""

    index: np.ndarray
    stratum: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    rows: np.ndarray
    total: np.ndarray

    @classmethod
    def of(cls, yields: np.ndarray, first_stratum: np.ndarray) -> Pieces:
        """Every unit whole: a piece per class it is expected to give rows of (``yields``: units × classes; unit
        i's classes are strata ``first_stratum[i] + class``)."""
        index, klass = np.nonzero(yields > 0)
        rows = yields[index, klass].astype(np.float64)
        return cls(index, first_stratum[index] + klass, np.zeros(len(index)), np.ones(len(index)), rows, rows)

    def share(self, order: np.ndarray, n_strata: int, weights: np.ndarray, part: int,
              rng: np.random.Generator) -> Pieces:
        """The pieces of part ``part`` when every stratum's pieces (in pT ``order``, one key per piece) are shared
        among ``len(weights)`` parts in proportion to ``weights`` (see the module's docstring)."""
        parts = len(weights)
        if parts == 1:
            return self
        offsets = rng.random(n_strata)
        bounds = np.concatenate([[0.0], np.cumsum(weights, dtype=np.float64)]) / max(float(np.sum(weights)), 1e-300)
        cuts = []
        for stratum in np.unique(self.stratum).tolist():
            members = np.nonzero(self.stratum == stratum)[0]
            members = members[np.argsort(order[members], kind="stable")]
            place = golden(len(members), offsets[stratum])
            cuts.append(self._cut(members[np.argsort(place, kind="stable")], bounds[part], bounds[part + 1]))
        if not cuts:
            return self
        members, lo, hi = (np.concatenate(arrays) for arrays in zip(*cuts, strict=True))
        total = self.total[members]
        return Pieces(self.index[members], self.stratum[members], lo, hi, total * (hi - lo), total)

    def _cut(self, members: np.ndarray, first: float, last: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """What of ``members``' line lies between fractions ``first`` and ``last`` of it: those pieces (indices into
        ``self``) and their ranges, cut where the line is."""
        rows = self.rows[members]
        end = np.cumsum(rows)
        start = end - rows
        a, b = first * end[-1], last * end[-1]
        inside = (start < b) & (end > a)
        members, start, end = members[inside], start[inside], end[inside]
        total, lo = self.total[members], self.lo[members]
        return (members, np.where(start < a, lo + (a - start) / total, lo),
                np.where(end > b, lo + (b - start) / total, self.hi[members]))


def golden(n: int, offset: float = 0.0) -> np.ndarray:
    """``offset + k·φ mod 1`` for k = 1..n: n places in [0, 1), any run of consecutive ones spread evenly."""
    return np.modf(offset + GOLDEN * np.arange(1, n + 1))[0]


def places(n: int) -> np.ndarray:
    """The places in [0, 1) of a unit's ``n`` rows: consecutive rows (one class, rising pT) spread evenly."""
    return golden(n)


def kept(pieces: tuple[tuple[int, float, float], ...], strata: np.ndarray) -> np.ndarray:
    """Which of a unit's rows (their ``strata``) its ``pieces`` (stratum, lo, hi) keep."""
    place = places(len(strata))
    keep = np.zeros(len(strata), bool)
    for stratum, lo, hi in pieces:
        keep |= (strata == stratum) & (place >= lo) & (place < hi)
    return keep
