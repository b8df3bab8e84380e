"""Computing statistics on Dask: two passes over the shards, reading only the columns needed.

Pass 1 (one task per shard): per auto variable a 65,536-bin histogram of the float32 key's top bits
plus moments, NaN count, min and max over the first ``fraction`` of the shard's jets after selection;
per class a 2-D histogram in the reweight variables over the weight fraction. Pass 2: for each auto
variable, low-bit histograms inside the few bins holding the wanted order statistics. Everything merges
by addition, so the results equal a single pass over all jets.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from distributed import Client

from jetstore.config.variables import VariableResolver
from jetstore.config.weaver import TrainingConfig
from jetstore.errors import DatasetError, SchemaError
from jetstore.stats import quantiles
from jetstore.stats.result import StatsResult, VariableStats
from jetstore.stats.weights import cell_ids, class_histograms, weight_tables
from jetstore.store.dataset import Dataset, ShardSource
from jetstore.store.manifest import ShardEntry
from jetstore.store.table import JetTable

PERCENTS = (16.0, 50.0, 84.0)
PLOT_BINS = 100


@dataclass
class ShardPass1:
    jets_read: int = 0
    jets_selected: int = 0
    coarse: dict[str, np.ndarray] = field(default_factory=dict)
    moments: dict[str, np.ndarray] = field(default_factory=dict)  # count, nan, sum, sum2, min, max
    class_hists: dict[str, np.ndarray] = field(default_factory=dict)
    unit_counts: np.ndarray | None = None  # rows of (unit, cell, count)


def _rows(n: int, fraction: float) -> int:
    """weaver's load range: the first trunc(fraction * n) entries, at least one."""
    return n if fraction >= 1 else max(1, math.trunc(fraction * n))


def _fraction_table(source: ShardSource, shard: ShardEntry, resolver: VariableResolver, names,
                    fraction: float) -> JetTable:
    """The jets of a shard that a fraction covers: its first part (weaver's per-file rule, reading only
    that) or, for shards sorted at convert time (whose first part is biased), a fixed pseudo-random subset."""
    needs = resolver.needs(names)
    if fraction >= 1 or not source.schema.sort_by:
        return source.read(shard, needs.jet_columns, needs.features, stop=_rows(shard.n_jets, fraction))
    table = source.read(shard, needs.jet_columns, needs.features)
    return table.take(np.nonzero(_in_fraction(source, shard, fraction))[0])


def _in_fraction(source: ShardSource, shard: ShardEntry, fraction: float) -> np.ndarray:
    """Per stored jet: is it in the fraction (the rule :func:`_fraction_table` reads by)."""
    if fraction >= 1:
        return np.ones(shard.n_jets, dtype=bool)
    if source.schema.sort_by:
        return np.random.default_rng(int(shard.checksum[:15], 16)).random(shard.n_jets) < fraction
    return np.arange(shard.n_jets) < _rows(shard.n_jets, fraction)


def _selected_values(table: JetTable, resolver: VariableResolver, names) -> tuple[dict[str, np.ndarray], int]:
    """Flat values of ``names`` over the selected jets (node-level values of those jets' nodes)."""
    mask = resolver.selection_mask(table)
    values = {}
    for name, (block, flat) in resolver.evaluate_flat(table, names).items():
        keep = mask if block is None else np.repeat(mask, table.blocks[block].counts)
        values[name] = np.asarray(flat)[keep]
    return values, int(mask.sum())


def pass1(source: ShardSource, shard: ShardEntry, config: TrainingConfig, std_fraction: float,
          weight_fraction: float, unit_jets: int = 2048) -> ShardPass1:
    """Dask task: histograms and moments of one shard."""
    resolver = VariableResolver(source.schema, config)
    out = ShardPass1(jets_read=shard.n_jets)
    names = config.auto_variables
    if names:
        values, out.jets_selected = _selected_values(
            _fraction_table(source, shard, resolver, names, std_fraction), resolver, names)
        for name in names:
            flat = values[name]
            keys = quantiles.float_keys(flat)
            out.coarse[name] = quantiles.coarse_histogram(keys)
            finite = flat[np.isfinite(flat)].astype(np.float64)
            out.moments[name] = np.array([flat.size, np.isnan(flat).sum(), finite.sum(), (finite**2).sum(),
                                          finite.min(initial=np.inf), finite.max(initial=-np.inf)])
    _weights_and_units(source, shard, config, resolver, weight_fraction, unit_jets, out, count=not names)
    return out


def _weights_and_units(source, shard, config, resolver, fraction: float, unit_jets: int, out: ShardPass1,
                       count: bool) -> None:
    """One read of the whole shard's reweighting columns gives both the per-class histograms (over the
    weight fraction) and the jets per (unit of ``unit_jets`` consecutive jets, reweighting cell), which the
    sampler needs to pick units by weight without reading them. Without a weights block every selected
    jet is in cell 0."""
    spec = config.weights
    names = () if spec is None else (spec.x_var, spec.y_var, *spec.classes)
    table = source.read(shard, *_columns(resolver, names))
    selected = resolver.selection_mask(table)
    if spec is None:
        cells, n_cells = np.where(selected, 0, -1), 1
    else:
        values = {name: np.asarray(flat) for name, (_, flat) in resolver.evaluate_flat(table, names).items()}
        x, y, labels = values[spec.x_var], values[spec.y_var], {c: values[c] for c in spec.classes}
        in_fraction = selected & _in_fraction(source, shard, fraction)
        out.class_hists = class_histograms(spec, x[in_fraction], y[in_fraction],
                                           {c: v[in_fraction] for c, v in labels.items()})
        if count:
            out.jets_selected = int(in_fraction.sum())
        cells = cell_ids(spec, x, y, labels, selected)
        n_cells = len(spec.classes) * (len(spec.x_bins) - 1) * (len(spec.y_bins) - 1)
    units = np.arange(len(cells)) // unit_jets
    keep = cells >= 0
    flat = np.bincount(units[keep] * n_cells + cells[keep], minlength=0)
    index = np.nonzero(flat)[0]
    out.unit_counts = np.stack([index // n_cells, index % n_cells, flat[index]], axis=1).astype(np.int64)


def _columns(resolver, names):
    needs = resolver.needs(names)
    return needs.jet_columns, needs.features


def pass2(source: ShardSource, shard: ShardEntry, config: TrainingConfig, std_fraction: float,
          bins: dict[str, tuple[int, ...]]) -> dict[str, dict[int, np.ndarray]]:
    """Dask task: low-bit histograms inside the located bins of every auto variable."""
    resolver = VariableResolver(source.schema, config)
    values, _ = _selected_values(_fraction_table(source, shard, resolver, tuple(bins), std_fraction), resolver,
                                 tuple(bins))
    return {name: quantiles.fine_histograms(quantiles.float_keys(values[name]), wanted)
            for name, wanted in bins.items()}


def compute_stats(dataset: Dataset, config: TrainingConfig, client: Client, fraction: float | None = None,
                  log: Callable[[str], None] | None = None) -> StatsResult:
    """Run both passes on ``client`` and return the merged result (not yet stored)."""
    log = log or (lambda message: print(message, file=sys.stderr))
    if fraction is not None and not 0 < fraction <= 1:
        raise SchemaError(f"--fraction must be in (0, 1], got {fraction}")
    std_fraction = fraction if fraction is not None else config.data_fraction
    weight_fraction = fraction if fraction is not None else 1.0
    resolver = VariableResolver(dataset.schema, config)
    for name in (*config.auto_variables, *_weight_names(config)):
        resolver.needs([name])  # unknown variables fail here, before any task runs
    shards = list(dataset.manifest.shards)
    if not shards:
        raise DatasetError(f"{dataset.url}: the dataset has no shards")
    source = dataset.source
    keys = [f"stats-pass1-{s.name}" for s in shards]
    log(f"stats pass 1: {len(shards)} shard(s), {len(config.auto_variables)} auto variable(s), "
        f"standardisation fraction {std_fraction}, weights fraction {weight_fraction}")
    unit_jets = int(dataset.manifest.options.get("layout", {}).get("chunk_jets", 2048))
    firsts = client.gather(client.map(pass1, [source] * len(shards), shards, config=config,
                                      std_fraction=std_fraction, weight_fraction=weight_fraction,
                                      unit_jets=unit_jets, key=keys))
    coarse = {n: sum(r.coarse[n] for r in firsts) for n in config.auto_variables}
    moments = {n: _merge_moments([r.moments[n] for r in firsts]) for n in config.auto_variables}
    targets = {}
    for name in config.auto_variables:
        count = int(moments[name][0])
        if count == 0:
            raise DatasetError(f"variable '{name}' has no entries after the selection")
        ranks = quantiles.percentile_ranks(count, PERCENTS)
        targets[name] = quantiles.locate(coarse[name], [r for pair in ranks.values() for r in pair[:2]])
    fine: dict[str, dict[int, np.ndarray]] = {n: {} for n in config.auto_variables}
    if targets:
        log("stats pass 2: exact order statistics")
        bins = {n: t.bins for n, t in targets.items()}
        seconds = client.gather(client.map(pass2, [source] * len(shards), shards, config=config,
                                           std_fraction=std_fraction, bins=bins,
                                           key=[f"stats-pass2-{s.name}" for s in shards]))
        for result in seconds:
            for name, hists in result.items():
                for b, hist in hists.items():
                    fine[name][b] = fine[name].get(b, 0) + hist
    variables = {}
    for name in config.auto_variables:
        statistics = quantiles.order_statistics(targets[name], fine[name])
        ranks = quantiles.percentile_ranks(int(moments[name][0]), PERCENTS)
        low, center, high = (quantiles.interpolate(statistics, ranks[q]) for q in PERCENTS)
        variables[name] = _variable_stats(name, moments[name], low, center, high, coarse[name],
                                          config.variables[name])
    class_hists, tables = {}, {}
    if config.weights is not None:
        class_hists = {c: sum(r.class_hists[c] for r in firsts) for c in config.weights.classes}
        try:
            tables = weight_tables(config.weights, class_hists)
        except ValueError as exc:
            raise DatasetError(f"cannot make weights: {exc}") from None
    per_shard = {s.name: r.unit_counts for s, r in zip(shards, firsts, strict=True)}
    return StatsResult(
        config_hash=config.hash, plan_hash=dataset.manifest.plan_hash, standardization_fraction=std_fraction,
        weights_fraction=weight_fraction, jets_read=sum(r.jets_read for r in firsts),
        jets_selected=sum(r.jets_selected for r in firsts), variables=variables, class_hists=class_hists,
        weight_tables=tables, unit_jets=unit_jets, unit_counts=per_shard,
    )


def _weight_names(config: TrainingConfig) -> tuple[str, ...]:
    spec = config.weights
    return () if spec is None else (spec.x_var, spec.y_var, *spec.classes)


def _merge_moments(parts: list[np.ndarray]) -> np.ndarray:
    stacked = np.stack(parts)
    return np.array([*stacked[:, :4].sum(axis=0), stacked[:, 4].min(), stacked[:, 5].max()])


def _variable_stats(name, moments, low, center, high, coarse, variable) -> VariableStats:
    count, nan_count, total, total2, lo, hi = moments
    finite = count - nan_count
    mean = total / finite if finite else math.nan
    std = math.sqrt(max(total2 / finite - mean**2, 0.0)) if finite else math.nan
    scale = max(high - center, center - low)
    scale = 1.0 if scale == 0 else 1.0 / scale
    return VariableStats(
        name=name, count=int(count), nan_count=int(nan_count), mean=mean, std=std, min=float(lo), max=float(hi),
        p16=low, p50=center, p84=high, center=center, scale=scale,
        histogram=_plot_histograms(coarse, center, scale, variable.min, variable.max),
    )


def _plot_histograms(coarse: np.ndarray, center: float, scale: float, clip_min: float, clip_max: float) -> dict:
    """100-bin histograms, raw (between the 0.5 and 99.5 percentiles) and standardised+clipped, built from
    the pass-1 histogram (each fine bin placed at its lower edge: resolution 2^-7 relative)."""
    filled = np.nonzero(coarse)[0]
    with np.errstate(invalid="ignore"):  # bins of NaN bit patterns (NaN counted as 0 are elsewhere), dropped below
        values = quantiles.key_values(filled.astype(np.uint32) << 16).astype(np.float64)
    counts = coarse[filled].astype(np.float64)
    finite = np.isfinite(values)
    values, counts = values[finite], counts[finite]
    cumulative = np.cumsum(counts) / counts.sum()
    lo = values[np.searchsorted(cumulative, 0.005)]
    hi = values[min(np.searchsorted(cumulative, 0.995), len(values) - 1)]
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    raw, raw_edges = np.histogram(values, bins=PLOT_BINS, range=(lo, hi), weights=counts)
    standardised = np.clip((values - center) * scale, clip_min, clip_max)
    std, std_edges = np.histogram(standardised, bins=PLOT_BINS, range=(clip_min, clip_max), weights=counts)
    return {"raw_edges": raw_edges.tolist(), "raw_counts": raw.tolist(),
            "std_edges": std_edges.tolist(), "std_counts": std.tolist()}
