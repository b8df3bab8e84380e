"""Which class and which reweighting cell every jet is in: the one rule shared by ``jetstore stats``
(per-unit cell counts) and the sampler (row weights, class strata). Torch-free; numba kernels.

A jet's class is the position of the first set label among the config's classes (``weights.reweight_classes``,
else the simple ``labels.value``), -1 if none is set; configs with only custom labels have one class that
every jet is in. Its cell is ``class * nx * ny + xbin * ny + ybin`` in the ``weights.reweight_vars`` bins
(one bin without a ``weights`` block), with weaver-core's binning rules; -1 means "never sampled" (not
selected, no class, or outside the bins when weaver discards under/overflow).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numba
import numpy as np

from jetstore.model.table import class_index

EDGES = np.array([-np.inf, np.inf])


@dataclass(frozen=True)
class CellRule:
    """Classes and (x, y) bins of a config (``TrainingConfig.cell_rule``)."""

    classes: tuple[str, ...]
    x_var: str | None = None
    y_var: str | None = None
    x_edges: tuple[float, ...] = (-np.inf, np.inf)
    y_edges: tuple[float, ...] = (-np.inf, np.inf)
    discard_out_of_range: bool = False

    @property
    def n_classes(self) -> int:
        return max(1, len(self.classes))

    @property
    def n_bins(self) -> int:
        return (len(self.x_edges) - 1) * (len(self.y_edges) - 1)

    @property
    def n_cells(self) -> int:
        return self.n_classes * self.n_bins

    @property
    def variables(self) -> tuple[str, ...]:
        """The variables a jet's cell depends on."""
        binned = tuple(v for v in (self.x_var, self.y_var) if v is not None)
        return (*binned, *self.classes)

    def cells(self, values: Mapping[str, np.ndarray], selected: np.ndarray) -> np.ndarray:
        """Cell of every jet (-1: never sampled) from the :attr:`variables` (one value per jet)."""
        selected = np.asarray(selected, dtype=np.bool_)
        n = len(selected)
        labels = class_index([values[c] for c in self.classes]) if self.classes else np.zeros(n, np.int64)
        x = np.asarray(values[self.x_var], np.float64) if self.x_var else np.zeros(n)
        y = np.asarray(values[self.y_var], np.float64) if self.y_var else np.zeros(n)
        return reweight_cells(x, y, labels, selected, np.asarray(self.x_edges, np.float64),
                              np.asarray(self.y_edges, np.float64), self.n_classes, self.discard_out_of_range)

    def class_of(self, cells: np.ndarray) -> np.ndarray:
        """The class of every cell (-1 stays -1)."""
        return np.where(cells >= 0, cells // self.n_bins, -1)

    def cell_weights(self, tables: Mapping[str, np.ndarray] | None) -> np.ndarray:
        """Weight of every cell from weaver's per-class weight tables (1 everywhere without them)."""
        if not tables:
            return np.ones(self.n_cells)
        return np.stack([np.asarray(tables[c]) for c in self.classes]).ravel().astype(np.float64)


@numba.njit(cache=True, nogil=True)
def reweight_cells(x, y, label_index, selected, x_edges, y_edges, n_classes, discard_out_of_range):
    """Cell id per row (-1: no weight), weaver's binning rules: ``digitize - 1`` clipped into range; rows
    outside the edges get -1 when they are discarded."""
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
