"""Computing statistics on a Dask cluster: two passes over the shards (:mod:`passes`), each a map over the
shards and a tree reduction on the cluster, so the client receives one merged result whatever the
number of shards; a progress bar per pass."""

from __future__ import annotations

import dataclasses
import logging
import math
import sys
import uuid
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import numpy as np
from distributed import Client, Future, as_completed
from tqdm import tqdm

from jetstore.config.variables import check_agreement
from jetstore.config.weaver import TrainingConfig
from jetstore.errors import DatasetError
from jetstore.stats import quantiles
from jetstore.stats.cache import ShardCache
from jetstore.stats.fraction import Fraction
from jetstore.stats.passes import ShardWork, merge_pass1, merge_pass2, pass1, pass2
from jetstore.stats.result import StatsResult, VariableStats, standardisation_problem
from jetstore.stats.weights import weight_tables
from jetstore.store.collection import Collection
from jetstore.store.dataset import Dataset

PERCENTS = (16.0, 50.0, 84.0)
PLOT_BINS = 100
FAN_IN = 8
LOG = logging.getLogger(__name__)


def compute_stats(data: Dataset | Collection, config: TrainingConfig, client: Client, fraction: float | None = None,
                  fraction_mode: str = "weaver", progress: bool = False,
                  log: Callable[[str], None] | None = None, reuse: bool = True) -> StatsResult:
    """Compute a config's standardisation and weight tables over a dataset, weaver-core exact, on ``client``.

    Two passes over the shards, each a map and a tree reduction on the cluster, so the client receives one
    merged result whatever the number of shards. The result is not stored: see
    :func:`jetstore.stats.result.write_stats`.

    Parameters
    ----------
    data
        A dataset, or a union of datasets (:class:`~jetstore.store.collection.Collection`), whose statistics
        equal weaver-core's on all their input files as one list.
    config
        The weaver-core data-config (:class:`~jetstore.config.weaver.TrainingConfig`): which variables are
        standardised automatically, and the ``weights`` block.
    client
        A Dask ``distributed`` client.
    fraction
        The part of the jets to read (default: ``preprocess.data_fraction`` for the standardisation and all jets
        for the weights, as weaver-core).
    fraction_mode
        ``weaver`` (the first part of every input file) or ``random`` (:mod:`jetstore.stats.fraction`).
    progress
        Show a progress bar per pass.
    log
        Where notices go (default: the ``jetstore.stats.run`` logger, at INFO).
    reuse
        Keep per-shard results with each dataset and reuse them (:mod:`jetstore.stats.cache`), so a rerun
        after an append reads only what it must.

    Returns
    -------
    StatsResult
        Per-variable median and 16/84% percentiles, class histograms, weight tables and per-unit cell counts,
        keyed by the config's and the data's hashes.

    Raises
    ------
    SchemaError
        A dataset does not store a column the config reads (or stores it with another dtype than the other
        datasets), or ``fraction`` / ``fraction_mode`` is invalid.
    DatasetError
        The data has no shards, a variable has no entries after the selection, a shard cannot be read, or
        the weights cannot be made.
    """
    log = log or LOG.info
    collection = Collection.open(data)
    check_agreement(collection, config)
    works, shards = [], []
    for index, member in enumerate(collection):
        dataset = member.dataset
        entries = {i.url: i.entries for i in dataset.manifest.inputs}
        standardization = Fraction(fraction if fraction is not None else config.data_fraction, fraction_mode,
                                   entries)
        weights = Fraction(fraction if fraction is not None else 1.0, fraction_mode, entries)
        cache = ShardCache.of(dataset.url, dataset.options, config.hash, standardization, weights) if reuse else None
        works.append(ShardWork(dataset.source, dataset.schema, config, standardization, weights, dataset.unit_jets,
                               collection.key_prefix(index), cache))
        shards.append(list(dataset.manifest.shards))
    if not any(shards):
        raise DatasetError(f"{collection.url}: no shards")
    log(f"stats pass 1: {sum(map(len, shards))} shard(s) of {len(collection)} dataset(s), "
        f"{len(config.auto_variables)} auto variable(s), standardisation fraction {works[0].standardization.value} "
        f"({fraction_mode}), weights fraction {works[0].weights.value}")
    first = map_reduce(client, pass1, works, shards, merge_pass1, "pass 1", progress)
    moments = first.moments
    coarse = {name: quantiles.dense(first.coarse[name]) for name in config.auto_variables}
    targets = {}
    for name in config.auto_variables:
        count = int(moments[name][0])
        if count == 0:
            raise DatasetError(f"variable '{name}' has no entries after the selection")
        ranks = quantiles.percentile_ranks(count, PERCENTS)
        targets[name] = quantiles.locate(coarse[name], [r for pair in ranks.values() for r in pair[:2]])
    fine: dict[str, dict[int, np.ndarray]] = {name: {} for name in config.auto_variables}
    if targets:
        log("stats pass 2: exact order statistics")
        bins = {n: t.bins for n, t in targets.items()}
        second = map_reduce(client, partial(pass2, bins=bins), works, shards, merge_pass2, "pass 2", progress)
        fine = {name: {b: quantiles.dense(h) for b, h in hists.items()} for name, hists in second.fine.items()}
    variables = {}
    for name in config.auto_variables:
        statistics = quantiles.order_statistics(targets[name], fine[name])
        ranks = quantiles.percentile_ranks(int(moments[name][0]), PERCENTS)
        low, center, high = (quantiles.interpolate(statistics, ranks[q]) for q in PERCENTS)
        variables[name] = _variable_stats(name, moments[name], low, center, high, coarse[name],
                                          config.variables[name])
    tables = {}
    if config.weights is not None:
        try:
            tables = weight_tables(config.weights, first.class_hists)
        except ValueError as exc:
            raise DatasetError(f"cannot make weights: {exc}") from None
    result = StatsResult(
        config_hash=config.hash, plan_hash=collection.identity,
        standardization_fraction=works[0].standardization.value, weights_fraction=works[0].weights.value,
        fraction_mode=fraction_mode, jets_read=first.jets_read, jets_selected=first.jets_selected,
        variables=variables, class_hists=first.class_hists, weight_tables=tables,
        unit_jets=max(w.unit_jets for w in works), unit_counts=first.unit_counts,
    )
    problem = result.problem()
    if problem is not None:  # e.g. weights of a class with no jets in any cell kept
        raise DatasetError(f"{collection.url}: the stats computed are unusable: {problem}")
    return result


def map_reduce(client: Client, function: Callable, works: Sequence[Any], shards: Sequence[Sequence], merge: Callable,
               label: str, progress: bool) -> Any:
    """``merge(function(works[i], shard) for every shard of every dataset i)``, merged on the cluster in a tree
    of fan-in ``FAN_IN``; the client holds futures only, and releases each shard's result once it is done."""
    token = uuid.uuid4().hex[:8]
    name = label.replace(" ", "")
    futures = []
    for index, (work, members) in enumerate(zip(works, shards, strict=True)):
        if not members:
            continue
        shared = client.scatter(work, hash=False)  # sent once, not pickled into every task
        futures += client.map(function, [shared] * len(members), members,
                              key=[f"stats-{name}-{token}-{index}-{s.name}" for s in members])
    total = len(futures)
    root = tree_reduce(client, futures, merge, f"stats-{name}-{token}-merge")
    pending = as_completed(futures)
    del futures
    with tqdm(total=total, desc=f"stats {label}", unit="shard", disable=not progress, file=sys.stderr,
              dynamic_ncols=True) as bar:
        for future in pending:
            if future.status == "error":
                future.result()  # raises the task's error (a DatasetError naming the shard)
            bar.update()
    return root.result()


def tree_reduce(client: Client, futures: list[Future], merge: Callable, prefix: str) -> Future:
    """One future of ``merge(*all results)``, built as a tree of merges of at most ``FAN_IN`` results."""
    level = 0
    while len(futures) > 1:
        futures = [client.submit(merge, *futures[i:i + FAN_IN], key=f"{prefix}-{level}-{i}")
                   for i in range(0, len(futures), FAN_IN)]
        level += 1
    if level == 0:
        return client.submit(merge, futures[0], key=f"{prefix}-0-0")
    return futures[0]


def _variable_stats(name, moments, low, center, high, coarse, variable) -> VariableStats:
    count, nan_count, total, total2, lo, hi = moments
    finite = count - nan_count
    mean = total / finite if finite else math.nan
    std = math.sqrt(max(total2 / finite - mean**2, 0.0)) if finite else math.nan
    scale = max(high - center, center - low)
    scale = 1.0 if scale == 0 else 1.0 / scale
    stats = VariableStats(name=name, count=int(count), nan_count=int(nan_count), mean=mean, std=std, min=float(lo),
                          max=float(hi), p16=low, p50=center, p84=high, center=center, scale=scale)
    problem = standardisation_problem(stats)
    if problem is not None:  # mostly ±inf or NaN values: no standardisation can be derived
        raise DatasetError(f"variable '{name}': {problem}; its values are mostly ±inf or NaN: clip it in "
                           "new_variables or give it a fixed center and scale in the config")
    return dataclasses.replace(stats, histogram=_plot_histograms(coarse, center, scale, variable.min, variable.max))


def _plot_histograms(coarse: np.ndarray, center: float, scale: float, clip_min: float, clip_max: float) -> dict:
    """100-bin histograms for the plots, raw (between the 0.5th and 99.5th percentiles) and standardised and
    clipped, from the pass-1 histogram. Its bins (2^-7 relative width) are spread uniformly over the plot
    bins they overlap (the distribution function is interpolated between their true edges), so plot bins
    narrower than them show no comb."""
    filled = np.nonzero(coarse)[0].astype(np.uint32)
    with np.errstate(invalid="ignore"):  # bins of NaN bit patterns (NaN counted as 0 are elsewhere), dropped below
        lower = quantiles.key_values(filled << 16).astype(np.float64)
        upper = quantiles.key_values(np.minimum(filled + 1, 0xFFFF) << 16).astype(np.float64)
    counts = coarse[filled].astype(np.float64)
    finite = np.isfinite(lower) & np.isfinite(upper) & (upper > lower)
    lower, upper, counts = lower[finite], upper[finite], counts[finite]
    cumulative = np.cumsum(counts)
    total = cumulative[-1]
    edges = np.column_stack([lower, upper]).ravel()  # non-decreasing: the bins are in value order
    below = np.column_stack([cumulative - counts, cumulative]).ravel()
    lo = lower[np.searchsorted(cumulative, 0.005 * total)]
    hi = upper[min(np.searchsorted(cumulative, 0.995 * total), len(upper) - 1)]
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    raw_edges = np.linspace(lo, hi, PLOT_BINS + 1)
    raw = np.diff(np.interp(raw_edges, edges, below))
    std_edges = np.linspace(clip_min, clip_max, PLOT_BINS + 1)
    at = np.interp(std_edges / scale + center, edges, below)  # (x - center) * scale is increasing in x
    at[0], at[-1] = 0.0, total  # clipping puts what lies outside into the first and last bins
    return {"raw_edges": raw_edges.tolist(), "raw_counts": raw.tolist(),
            "std_edges": std_edges.tolist(), "std_counts": np.diff(at).tolist()}
