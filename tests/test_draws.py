"""The sampler's systematic row draw (``kernels.multiplicities``): every row keeps its expected multiplicity, and a
unit's rows are drawn cell by cell, so each (class, pT, eta) cell of a unit gets within one row of what it is owed."""

from __future__ import annotations

import numpy as np

from jetstore.sampler import kernels


def _units(seed: int, units: int = 40, size: int = 256, cells: int = 330):
    rng = np.random.default_rng(seed)
    bounds = np.arange(0, units * size + 1, size).astype(np.int64)
    # a unit spans one or two pT bins of one class, its rows' eta bins at random; some rows not selected (-1)
    base = np.repeat(rng.integers(0, cells - 10, units), size)
    cell = (base + rng.integers(0, 10, units * size)).astype(np.int64)
    cell[rng.random(units * size) < 0.05] = -1
    expected = np.where(cell >= 0, rng.random(units * size) * 1.6, 0.0)
    return expected, cell, bounds, rng


def test_each_cell_of_a_unit_gets_within_one_row_of_its_expectation():
    expected, cell, bounds, rng = _units(1)
    for _ in range(20):
        kept = kernels.multiplicities(expected, cell, bounds, rng.random(len(bounds) - 1))
        for u in range(len(bounds) - 1):
            rows = slice(bounds[u], bounds[u + 1])
            owed = np.bincount(cell[rows] + 1, weights=expected[rows])
            got = np.bincount(cell[rows] + 1, weights=kept[rows], minlength=len(owed))
            assert (np.abs(got - owed) < 1 + 1e-9).all()
            assert (kept[rows][cell[rows] < 0] == 0).all()
            assert (np.abs(kept[rows] - expected[rows]) < 1).all()  # floor or ceil


def test_every_row_keeps_its_expected_multiplicity():
    expected, cell, bounds, rng = _units(2, units=4)
    draws = 4000
    total = np.zeros(len(expected))
    for _ in range(draws):
        total += kernels.multiplicities(expected, cell, bounds, rng.random(len(bounds) - 1))
    # each row's count is floor or ceil of its expectation: its mean has a standard error below 0.5 / sqrt(draws)
    assert np.abs(total / draws - expected).max() < 6 * 0.5 / np.sqrt(draws)


def test_rows_go_by_cell_then_in_stored_order():
    """The order the rows are drawn in (a counting sort over the few cells of a unit, a stable sort over many)."""
    rng = np.random.default_rng(3)
    for spread in (1, 12, 400, 10_000):
        cells = rng.integers(-1, spread, 256).astype(np.int64)
        assert (kernels._by_cell(cells) == np.argsort(cells, kind="stable")).all(), spread
    assert len(kernels._by_cell(np.zeros(0, np.int64))) == 0
