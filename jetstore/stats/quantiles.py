"""Exact, mergeable quantiles of float32 data in two passes (radix select on the float bit pattern).

float32 values map monotonically onto uint32 keys. Pass 1 counts the top 16 key bits (65,536 bins,
mergeable by addition); that locates the bin of every wanted order statistic. Pass 2 counts the low 16
bits inside those few bins only, which pins each order statistic to its exact value. Quantiles then
follow numpy's default ('linear') definition: order statistics at floor/ceil of ``(n - 1) q``,
interpolated (in float64; numpy interpolates in the input dtype, so results agree to float32
rounding). NaNs count as 0, as weaver-core's AutoStandardizer replaces them; float64 inputs are rounded
to float32 first (relative error ≤ 6e-8).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

BINS = 1 << 16
SIGN = np.uint32(0x80000000)


def float_keys(values: np.ndarray) -> np.ndarray:
    """Order-preserving uint32 keys of float32 values (NaN mapped to 0.0)."""
    values = np.nan_to_num(np.asarray(values, dtype=np.float32).ravel(), nan=0.0, posinf=np.inf, neginf=-np.inf)
    bits = values.view(np.uint32)
    return np.where(bits & SIGN, ~bits, bits | SIGN)


def key_values(keys: np.ndarray) -> np.ndarray:
    """Inverse of :func:`float_keys`."""
    keys = np.asarray(keys, dtype=np.uint32)
    bits = np.where(keys & SIGN, keys & ~SIGN, ~keys)
    return bits.view(np.float32)


def coarse_histogram(keys: np.ndarray) -> np.ndarray:
    return np.bincount(keys >> 16, minlength=BINS).astype(np.int64)


@dataclass(frozen=True)
class RankTargets:
    """Order statistics wanted (0-based ranks) and, for each, its top-16-bit bin and rank inside it."""

    ranks: tuple[int, ...]
    bins: tuple[int, ...]
    residuals: tuple[int, ...]


def locate(coarse: np.ndarray, ranks: Iterable[int]) -> RankTargets:
    cumulative = np.cumsum(coarse)
    ranks = tuple(sorted(set(ranks)))
    bins = tuple(int(np.searchsorted(cumulative, r, side="right")) for r in ranks)
    residuals = tuple(int(r - (cumulative[b - 1] if b else 0)) for r, b in zip(ranks, bins, strict=True))
    return RankTargets(ranks, bins, residuals)


def fine_histograms(keys: np.ndarray, bins: Iterable[int]) -> dict[int, np.ndarray]:
    """Low-16-bit counts of the keys inside each of ``bins`` (mergeable by addition)."""
    top = keys >> 16
    out = {}
    for b in sorted(set(bins)):
        inside = keys[top == b]
        out[b] = np.bincount(inside & 0xFFFF, minlength=BINS).astype(np.int64)
    return out


def order_statistics(targets: RankTargets, fine: dict[int, np.ndarray]) -> dict[int, float]:
    """Exact value of every target rank."""
    out = {}
    for rank, b, residual in zip(targets.ranks, targets.bins, targets.residuals, strict=True):
        low = int(np.searchsorted(np.cumsum(fine[b]), residual, side="right"))
        out[rank] = float(key_values(np.array([(b << 16) | low], dtype=np.uint32))[0])
    return out


def percentile_ranks(n: int, percents: Iterable[float]) -> dict[float, tuple[int, int, float]]:
    """numpy 'linear' percentiles: for each q, (lower rank, upper rank, interpolation weight)."""
    out = {}
    for q in percents:
        index = (n - 1) * q / 100.0
        lower = math.floor(index)
        out[q] = (lower, min(lower + 1, n - 1), index - lower)
    return out


def interpolate(statistics: dict[int, float], ranks: tuple[int, int, float]) -> float:
    lower, upper, weight = ranks
    a, b = statistics[lower], statistics[upper]
    return a + (b - a) * weight if weight < 0.5 else b - (b - a) * (1 - weight)


Sparse = tuple[np.ndarray, np.ndarray]  # (bins, counts) of the non-empty bins of a 65,536-bin histogram


def sparse(dense: np.ndarray) -> Sparse:
    """The non-empty bins of a histogram (shards fill a few thousand of the 65,536: much less to ship)."""
    bins = np.nonzero(dense)[0]
    return bins.astype(np.int64), dense[bins].astype(np.int64)


def merge_sparse(parts: list[Sparse]) -> Sparse:
    """Sum of sparse histograms."""
    parts = [p for p in parts if len(p[0])]
    if not parts:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    if len(parts) == 1:
        return parts[0]
    bins, inverse = np.unique(np.concatenate([p[0] for p in parts]), return_inverse=True)
    counts = np.zeros(len(bins), np.int64)
    np.add.at(counts, inverse, np.concatenate([p[1] for p in parts]))
    return bins, counts


def dense(histogram: Sparse) -> np.ndarray:
    out = np.zeros(BINS, np.int64)
    out[histogram[0]] = histogram[1]
    return out
