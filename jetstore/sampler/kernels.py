"""numba kernels of the sampler's hot path: weighted row selection, standardise + clip + pad/truncate
(weaver-core 0.5's ``constant`` and ``wrap`` modes, NaN → 0), row gathers and permutations.

Arithmetic follows weaver-core's fused kernels in float32 so tensors match it bit for bit.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True)
def reweight_cells(x, y, label_index, selected, x_edges, y_edges, n_classes, discard_out_of_range):
    """Cell id ``class * nx * ny + xbin * ny + ybin`` per row (-1: no weight), weaver's binning rules:
    ``digitize - 1`` clipped into range; rows outside the edges get -1 when they are discarded."""
    n = len(x)
    nx = len(x_edges) - 1
    ny = len(y_edges) - 1
    out = np.full(n, -1, np.int64)
    for i in range(n):
        c = label_index[i]
        if not selected[i] or c < 0 or c >= n_classes:
            continue
        if discard_out_of_range and not (x_edges[0] <= x[i] <= x_edges[nx] and y_edges[0] <= y[i] <= y_edges[ny]):
            continue
        xb = np.searchsorted(x_edges, x[i], side="right") - 1
        yb = np.searchsorted(y_edges, y[i], side="right") - 1
        xb = min(max(xb, 0), nx - 1)
        yb = min(max(yb, 0), ny - 1)
        out[i] = c * nx * ny + xb * ny + yb
    return out


@numba.njit(cache=True)
def multiplicities(probability, uniform):
    """How often each row is delivered: floor(p) plus one more with probability frac(p)."""
    out = np.empty(len(probability), np.int64)
    for i in range(len(probability)):
        p = probability[i]
        whole = np.floor(p)
        out[i] = np.int64(whole) + (1 if uniform[i] < p - whole else 0)
    return out


@numba.njit(cache=True)
def repeat_rows(counts):
    """Row indices repeated by their multiplicities (the delivered rows of a unit, in row order)."""
    total = 0
    for i in range(len(counts)):
        total += counts[i]
    out = np.empty(total, np.int64)
    k = 0
    for i in range(len(counts)):
        for _ in range(counts[i]):
            out[k] = i
            k += 1
    return out


@numba.njit(cache=True)
def _transform(value, center, scale, low, high, standardize):
    if standardize:
        value = (value - center) * scale
        if value < low:
            value = low
        elif value > high:
            value = high
    if value != value:
        value = 0.0
    return value


@numba.njit(cache=True)
def pad_block(values, offsets, rows, centers, scales, lows, highs, standardize, pad_values, wrap, out):
    """``out[r, v, :]`` = variable v of jet ``rows[r]``: standardised and clipped where asked, NaN → 0,
    truncated or padded to ``out.shape[2]`` with the pad value (constant) or cyclically (wrap, empty
    jets all 0), as weaver-core 0.5's fused kernels."""
    n_vars = out.shape[1]
    length = out.shape[2]
    for r in range(len(rows)):
        start = offsets[rows[r]]
        count = offsets[rows[r] + 1] - start
        n = min(count, length)
        for v in range(n_vars):
            center, scale, low, high, flag = centers[v], scales[v], lows[v], highs[v], standardize[v]
            source = values[v]
            target = out[r, v]
            for j in range(n):
                target[j] = _transform(source[start + j], center, scale, low, high, flag)
            if wrap:
                if count == 0:
                    target[:] = 0.0
                else:
                    for j in range(n, length):
                        target[j] = target[j % count]
            else:
                target[n:] = pad_values[v]


@numba.njit(cache=True)
def scalar_block(values, rows, centers, scales, lows, highs, standardize, out):
    """``out[r, v]`` = jet-level variable v of jet ``rows[r]``, standardised and clipped, NaN → 0."""
    for r in range(len(rows)):
        for v in range(out.shape[1]):
            value = values[v, rows[r]]
            if standardize[v]:
                value = (value - centers[v]) * scales[v]
                if value < lows[v]:
                    value = lows[v]
                elif value > highs[v]:
                    value = highs[v]
            if value != value:
                value = 0.0
            out[r, v] = value


@numba.njit(cache=True)
def permutation(n, seed):
    """A Fisher-Yates permutation of range(n) from a 64-bit seed (splitmix64 stream): the shuffle."""
    out = np.arange(n)
    state = np.uint64(seed)
    for i in range(n - 1, 0, -1):
        state += np.uint64(0x9E3779B97F4A7C15)
        z = state
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
        j = np.int64(z % np.uint64(i + 1))
        out[i], out[j] = out[j], out[i]
    return out


@numba.njit(cache=True)
def gather(source, rows, out):
    """``out[k] = source[rows[k]]`` for a 2-D or 3-D float32 pool."""
    for k in range(len(rows)):
        out[k] = source[rows[k]]
