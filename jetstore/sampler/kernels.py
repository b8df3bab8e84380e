"""numba kernels of the sampler's hot path, all ``nogil`` so reader threads run them in parallel: weighted
row multiplicities (systematic), standardise + clip + pad/truncate into batch rows (weaver-core 0.5's ``constant`` and
``wrap`` modes, NaN → 0), per-batch class composition, and random draws from the shuffle pools.

Arithmetic follows weaver-core's fused kernels in float32 so tensors match it bit for bit.
"""

from __future__ import annotations

import numba
import numpy as np

from jetstore.model.splitmix import GOLDEN, MIX1, MIX2

CACHE_LINE_FLOATS = 16  # float32 values per 64-byte cache line


@numba.njit(cache=True, nogil=True)
def multiplicities(expected, cells, bounds, starts):
    """How often each row is delivered, ``expected[i]`` times on average (floor or ceil), by systematic
    sampling within each unit (rows ``bounds[u]:bounds[u + 1]``): a unit's rows, by reweighting cell (class, pT
    bin, eta bin) and then in stored order, cover consecutive stretches of length ``expected[i]`` of a line, and row
    i is delivered once per point ``starts[u] + k`` (k integer, ``starts[u]`` uniform in [0, 1)) in its stretch.
    So a unit's total is within one of its expectation, and so is each of its cells' total, and any run of a
    cell's rows (sorted shards: a pT range)."""
    out = np.empty(len(expected), np.int64)
    for u in range(len(bounds) - 1):
        first = bounds[u]
        order = _by_cell(cells[first:bounds[u + 1]])
        end = 0.0
        before = np.floor(-starts[u])
        for k in range(len(order)):
            i = first + order[k]
            end += expected[i]
            after = np.floor(end - starts[u])
            out[i] = np.int64(after - before)
            before = after
    return out


@numba.njit(cache=True, nogil=True)
def _by_cell(cells):
    """The order of a unit's rows by cell, stored order within a cell (a counting sort: a unit's rows span a few
    cells; a stable argsort where they span many)."""
    if len(cells) == 0:
        return np.zeros(0, np.int64)
    low, high = cells.min(), cells.max()
    if high - low >= 4 * len(cells):
        return np.argsort(cells, kind="mergesort")
    place = np.zeros(high - low + 1, np.int64)
    for c in cells:
        place[c - low] += 1
    total = 0
    for k in range(len(place)):
        total, place[k] = total + place[k], total
    order = np.empty(len(cells), np.int64)
    for i in range(len(cells)):
        order[place[cells[i] - low]] = i
        place[cells[i] - low] += 1
    return order


@numba.njit(cache=True, nogil=True)
def unit_starts(seed, epoch, rounds, units):
    """A uniform number in [0, 1) per (seed, epoch, round, unit): splitmix64 chained over the four."""
    out = np.empty(len(units))
    base = mix64(mix64(np.uint64(seed) + GOLDEN) + np.uint64(epoch))
    for i in range(len(units)):
        z = mix64(mix64(base + np.uint64(rounds[i])) + np.uint64(units[i]))
        out[i] = np.float64(z >> np.uint64(11)) / 9007199254740992.0
    return out


@numba.njit(cache=True, nogil=True)
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


@numba.njit(cache=True, nogil=True)
def by_class(classes, n_classes):
    """Rows grouped by class (a counting sort: each class's rows in row order; rows of class -1 left out), and
    the end of each class's rows."""
    counts = np.zeros(n_classes, np.int64)
    for c in classes:
        if c >= n_classes:
            raise IndexError("a row's class is past the pools' classes")
        if c >= 0:
            counts[c] += 1
    ends = np.cumsum(counts)
    place = ends - counts
    out = np.empty(ends[-1], np.int64)
    for i in range(len(classes)):
        c = classes[i]
        if c >= 0:
            out[place[c]] = i
            place[c] += 1
    return out, ends


@numba.njit(cache=True, nogil=True, inline="always")
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


@numba.njit(cache=True, nogil=True)
def _fetch_rows(values, starts, counts, rows, length):
    """The first value and the count of every row of a batch, and every cache line of their first ``length``
    values touched once: loads independent of each other, which the CPU overlaps, so the padding loop then finds
    randomly placed rows in cache instead of waiting on each in turn (a third less time per batch). Returns
    (firsts, counts, a sum of the touched values: kept so the loads are not optimised away)."""
    firsts = np.empty(len(rows), np.int64)
    numbers = np.empty(len(rows), np.int64)
    for r in range(len(rows)):
        firsts[r] = starts[rows[r]]
        numbers[r] = counts[rows[r]]
    flat = values.reshape(-1)
    width = values.shape[1]
    touched = np.float32(0.0)
    for r in range(len(rows)):
        first = firsts[r] * width
        for k in range(first, first + min(numbers[r], length) * width, CACHE_LINE_FLOATS):
            touched += flat[k]
    return firsts, numbers, touched


@numba.njit(cache=True, nogil=True)
def pad_rows(values, starts, counts, rows, centers, scales, lows, highs, standardize, pad_values, wrap, out):
    """``out[r, v, :]`` = variable v of arena row ``rows[r]`` (its values ``values[starts[row]:][:counts[row], v]``):
    standardised and clipped where asked, NaN → 0, truncated or padded to ``out.shape[2]`` with the pad value
    (constant) or cyclically (wrap, empty jets all 0), as weaver-core 0.5's fused kernels. ``values`` is
    C-contiguous (the arena's)."""
    n_vars = out.shape[1]
    length = out.shape[2]
    firsts, numbers, touched = _fetch_rows(values, starts, counts, rows, length)
    for r in range(len(rows)):
        start = firsts[r]
        count = numbers[r]
        n = min(count, length)
        block = values[start:start + n]  # the jet's values: one stretch of memory, in cache after the first variable
        for v in range(n_vars):
            center, scale, low, high, flag = centers[v], scales[v], lows[v], highs[v], standardize[v]
            target = out[r, v]
            for j in range(n):
                target[j] = _transform(block[j, v], center, scale, low, high, flag)
            if wrap:
                if count == 0:
                    target[:] = 0.0
                else:
                    for j in range(n, length):
                        target[j] = target[j % count]
            else:
                target[n:] = pad_values[v]
    return touched


@numba.njit(cache=True, nogil=True)
def side_by_side(columns, out):
    """``out[i, c] = columns[c][i]``: equal-length float32 columns into one row-major array."""
    for i in range(out.shape[0]):
        for c in range(len(columns)):
            out[i, c] = columns[c][i]


@numba.njit(cache=True, nogil=True)
def scalar_rows(values, rows, centers, scales, lows, highs, standardize, out):
    """``out[r, v]`` = jet-level variable v of arena row ``rows[r]``, standardised and clipped, NaN → 0."""
    for r in range(len(rows)):
        source = values[rows[r]]
        for v in range(out.shape[1]):
            out[r, v] = _transform(source[v], centers[v], scales[v], lows[v], highs[v], standardize[v])


@numba.njit(cache=True, nogil=True)
def gather(source, rows, out):
    """``out[r] = source[rows[r]]``."""
    for r in range(len(rows)):
        out[r] = source[rows[r]]


@numba.njit(cache=True, nogil=True)
def translate(entries, bits, ref_start, refs):
    """Arena row of every pool entry ``(unit sequence << bits) | kept row``."""
    out = np.empty(len(entries), np.int64)
    mask = (np.int64(1) << bits) - 1
    for i in range(len(entries)):
        out[i] = refs[ref_start[entries[i] >> bits] + (entries[i] & mask)]
    return out


@numba.njit(cache=True, nogil=True)
def composition(fractions, deficits, batch):
    """Jets of every class in the next batch: each of ``batch`` places goes to the class furthest behind
    its share (stride scheduling), so every batch is within one jet of ``batch * fractions`` and the running
    totals never drift. ``deficits`` carries over between batches."""
    counts = np.zeros(len(fractions), np.int64)
    for _ in range(batch):
        best = 0
        for c in range(len(fractions)):
            deficits[c] += fractions[c]
            if deficits[c] > deficits[best]:
                best = c
        deficits[best] -= 1.0
        counts[best] += 1
    return counts


@numba.njit(cache=True, nogil=True, inline="always")
def mix64(z):
    """splitmix64's finaliser: a well-mixed 64-bit number from any 64-bit number."""
    z = (z ^ (z >> np.uint64(30))) * MIX1
    z = (z ^ (z >> np.uint64(27))) * MIX2
    return z ^ (z >> np.uint64(31))


@numba.njit(cache=True, nogil=True, inline="always")
def _next(state):
    """splitmix64: the next state and a 64-bit random number."""
    state = state + GOLDEN
    return state, mix64(state)


@numba.njit(cache=True, nogil=True)
def draw(pool, size, n, state):
    """Remove ``n`` uniformly random entries from ``pool[:size]`` (swap with the last): (the entries, the
    new size, the new random state)."""
    out = np.empty(n, pool.dtype)
    for k in range(n):
        state, z = _next(state)
        j = np.int64(z % np.uint64(size))
        out[k] = pool[j]
        size -= 1
        pool[j] = pool[size]
    return out, size, state


@numba.njit(cache=True, nogil=True)
def permutation(n, state):
    """A Fisher-Yates permutation of range(n) from a 64-bit state."""
    out = np.arange(n)
    for i in range(n - 1, 0, -1):
        state, z = _next(state)
        j = np.int64(z % np.uint64(i + 1))
        out[i], out[j] = out[j], out[i]
    return out, state


def warm() -> None:
    """Load numba (its extensions and JIT: seconds, once per process) and the per-window kernels from their cache
    now. A JetDataset does this when it is made, so DataLoader workers forked from the process start with them
    loaded, instead of paying it again in every worker of every epoch (without ``persistent_workers``)."""
    counts = np.zeros(1, np.int64)
    repeat_rows(counts)
    multiplicities(np.zeros(1), np.zeros(1, np.int64), np.array([0, 1], np.int64), np.zeros(1))
    unit_starts(0, 0, counts, counts)
