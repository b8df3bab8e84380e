"""The two passes of ``jetstore stats`` over one shard, and how their results merge.

Pass 1: per auto variable the histogram of the top 16 bits of the float32 keys (sparse) and the moments,
NaN count, min and max of the standardisation fraction's selected values; per class the 2-D histogram in
the reweighting variables over the weights fraction; per unit the jets in each cell (:mod:`cells`), which
the sampler needs. Pass 2: per auto variable, the low-16-bit histograms inside the few top-bit bins
holding the wanted order statistics. Everything merges by addition (a tree reduction on the cluster), so
the results equal one pass over all jets.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import numpy as np

from jetstore.config.variables import VariableResolver
from jetstore.config.weaver import TrainingConfig
from jetstore.dataset.dataset import ShardSource
from jetstore.dataset.manifest import ShardEntry
from jetstore.model.fraction import ALL, NONE, SOME, Fraction
from jetstore.model.layout import ENTRY, INPUT, Selection
from jetstore.model.table import JetTable
from jetstore.schema import Schema
from jetstore.stats import quantiles
from jetstore.stats.cache import ShardCache
from jetstore.stats.weights import class_histograms


@dataclass(frozen=True)
class ShardWork:
    """What a stats task needs for the shards of one dataset (small and picklable)."""

    source: ShardSource
    schema: Schema
    config: TrainingConfig
    standardization: Fraction
    weights: Fraction
    unit_jets: int
    key_prefix: str = ""  # the dataset's prefix of shard names in a union's unit counts
    cache: ShardCache | None = None


@dataclass
class Pass1:
    jets_read: int = 0
    jets_selected: int = 0
    coarse: dict[str, quantiles.Sparse] = field(default_factory=dict)
    moments: dict[str, np.ndarray] = field(default_factory=dict)  # count, nan, sum, sum2, min, max
    class_hists: dict[str, np.ndarray] = field(default_factory=dict)
    unit_counts: dict[str, np.ndarray] = field(default_factory=dict)  # shard → rows of (unit, cell, jets)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """One shard's result as plain arrays (for :mod:`cache`)."""
        (rows,) = self.unit_counts.values()
        out = {"jets": np.array([self.jets_read, self.jets_selected]), "units": rows}
        for name, (bins, counts) in self.coarse.items():
            out[f"bins:{name}"], out[f"counts:{name}"], out[f"moments:{name}"] = bins, counts, self.moments[name]
        out.update({f"hist:{label}": hist for label, hist in self.class_hists.items()})
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], key: str) -> Pass1:
        out = cls(int(arrays["jets"][0]), int(arrays["jets"][1]), unit_counts={key: arrays["units"]})
        for name, value in arrays.items():
            kind, _, rest = name.partition(":")
            if kind == "bins":
                out.coarse[rest] = (value, arrays[f"counts:{rest}"])
                out.moments[rest] = arrays[f"moments:{rest}"]
            elif kind == "hist":
                out.class_hists[rest] = value
        return out


@dataclass
class Pass2:
    fine: dict[str, dict[int, quantiles.Sparse]] = field(default_factory=dict)

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {f"{part}:{b}:{name}": array for name, hists in self.fine.items() for b, histogram in hists.items()
                for part, array in zip(("bins", "counts"), histogram, strict=True)}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> Pass2:
        out = cls()
        for key, value in arrays.items():
            part, b, name = key.split(":", 2)
            if part == "bins":
                out.fine.setdefault(name, {})[int(b)] = (value, arrays[f"counts:{b}:{name}"])
        return out


def pass1(work: ShardWork, shard: ShardEntry) -> Pass1:
    """Dask task: histograms, moments and unit counts of one shard (reused from the cache when kept)."""
    key = work.key_prefix + shard.name
    cached = work.cache.load(shard, "pass1") if work.cache else None
    if cached is not None:
        with contextlib.suppress(KeyError, ValueError):
            return Pass1.from_arrays(cached, key)
    out = _pass1(work, shard, key)
    if work.cache:
        work.cache.save(shard, "pass1", out.to_arrays())
    return out


def _pass1(work: ShardWork, shard: ShardEntry, key: str) -> Pass1:
    config = work.config
    resolver = VariableResolver(work.schema, config)
    out = Pass1(jets_read=shard.n_jets)
    names = config.auto_variables
    if names:
        values, out.jets_selected = _standardization_values(work, shard, resolver, names)
        for name in names:
            flat = values[name]
            out.coarse[name] = quantiles.sparse(quantiles.coarse_histogram(quantiles.float_keys(flat)))
            finite = flat[np.isfinite(flat)].astype(np.float64)
            out.moments[name] = np.array([flat.size, np.isnan(flat).sum(), finite.sum(), (finite**2).sum(),
                                          finite.min(initial=np.inf), finite.max(initial=-np.inf)])
    _weights_and_units(work, shard, resolver, out, count=not names, key=key)
    return out


def pass2(work: ShardWork, shard: ShardEntry, bins: dict[str, tuple[int, ...]]) -> Pass2:
    """Dask task: low-bit histograms inside the located bins of every auto variable (the shard is read only
    for bins its cache does not hold)."""
    known = Pass2()
    if work.cache and (cached := work.cache.load(shard, "pass2")) is not None:
        with contextlib.suppress(KeyError, ValueError):
            known = Pass2.from_arrays(cached)
    missing = {name: tuple(b for b in wanted if b not in known.fine.get(name, {})) for name, wanted in bins.items()}
    missing = {name: wanted for name, wanted in missing.items() if wanted}
    if missing:
        resolver = VariableResolver(work.schema, work.config)
        values, _ = _standardization_values(work, shard, resolver, tuple(missing))
        for name, wanted in missing.items():
            fine = quantiles.fine_histograms(quantiles.float_keys(values[name]), wanted)
            known.fine.setdefault(name, {}).update({b: quantiles.sparse(h) for b, h in fine.items()})
        if work.cache:
            work.cache.save(shard, "pass2", known.to_arrays())
    return Pass2({name: {b: known.fine[name][b] for b in wanted} for name, wanted in bins.items()})


def merge_pass1(*parts: Pass1) -> Pass1:
    out = Pass1(jets_read=sum(p.jets_read for p in parts), jets_selected=sum(p.jets_selected for p in parts))
    for name in parts[0].coarse:
        out.coarse[name] = quantiles.merge_sparse([p.coarse[name] for p in parts])
        stacked = np.stack([p.moments[name] for p in parts])
        out.moments[name] = np.array([*stacked[:, :4].sum(axis=0), stacked[:, 4].min(), stacked[:, 5].max()])
    for label in parts[0].class_hists:
        out.class_hists[label] = np.sum([p.class_hists[label] for p in parts], axis=0)
    for part in parts:
        out.unit_counts.update(part.unit_counts)
    return out


def merge_pass2(*parts: Pass2) -> Pass2:
    out = Pass2()
    for name in parts[0].fine:
        out.fine[name] = {b: quantiles.merge_sparse([p.fine[name][b] for p in parts]) for b in parts[0].fine[name]}
    return out


def _read(work: ShardWork, shard: ShardEntry, needs: Selection, fraction: Fraction) -> tuple[JetTable, np.ndarray]:
    """The needed columns of a shard and, per jet, whether ``fraction`` covers it."""
    cover = fraction.covers(shard)
    if cover != SOME:
        table = work.source.read(shard, needs.jets, needs.blocks)
        return table, np.full(table.n_jets, cover == ALL)
    provenance = work.source.columns.provenance()
    table = work.source.read(shard, (*needs.jets, *provenance), needs.blocks)
    return table, fraction.mask(shard, table.jets[ENTRY], table.jets.get(INPUT))


def _standardization_values(work: ShardWork, shard: ShardEntry, resolver: VariableResolver,
                            names) -> tuple[dict[str, np.ndarray], int]:
    """Flat values of ``names`` over the selected jets of the standardisation fraction."""
    needs = resolver.needs(names)
    if work.standardization.covers(shard) == NONE:
        return {name: np.zeros(0, np.float32) for name in names}, 0
    table, covered = _read(work, shard, needs, work.standardization)
    if not covered.all():
        table = table.take(np.nonzero(covered)[0])
    mask = resolver.selection_mask(table)
    values = {}
    for name, (block, flat) in resolver.evaluate_flat(table, names).items():
        keep = mask if block is None else np.repeat(mask, table.blocks[block].counts)
        values[name] = np.asarray(flat)[keep]
    return values, int(mask.sum())


def _weights_and_units(work: ShardWork, shard: ShardEntry, resolver: VariableResolver, out: Pass1,
                       count: bool, key: str) -> None:
    """One read of the whole shard's reweighting columns gives the per-class histograms (over the weights
    fraction) and the jets per (unit, cell), which the sampler needs to pick units by weight and class
    without reading them."""
    spec = work.config.weights
    rule = work.config.cell_rule()
    table, covered = _read(work, shard, resolver.needs(rule.variables), work.weights)
    selected = resolver.selection_mask(table)
    values = {name: np.asarray(flat) for name, (_, flat) in resolver.evaluate_flat(table, rule.variables).items()}
    counted = selected & covered
    if spec is not None:
        out.class_hists = class_histograms(spec, values[spec.x_var][counted], values[spec.y_var][counted],
                                           {c: values[c][counted] for c in spec.classes})
    if count:
        out.jets_selected = int(counted.sum())
    cells = rule.cells(values, selected)
    units = np.arange(len(cells)) // work.unit_jets
    keep = cells >= 0
    flat = np.bincount(units[keep] * rule.n_cells + cells[keep], minlength=0)
    index = np.nonzero(flat)[0]
    out.unit_counts[key] = np.stack([index // rule.n_cells, index % rule.n_cells, flat[index]],
                                           axis=1).astype(np.int64)
