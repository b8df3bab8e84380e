"""Everything a sampler needs before it reads a jet, built once from the data, the config and the options:
the datasets (a :class:`~jetstore.dataset.collection.Collection`), their stored stats, the batch builders, the
cell rule and weights, the units with their expectations, the scheme and the epoch's shape.
:class:`jetstore.sampler.dataset.JetDataset` is a thin torch face over it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from jetstore.cache import DiskCache, parse_size
from jetstore.config.variables import check_agreement
from jetstore.config.weaver import TrainingConfig, load_training_config
from jetstore.dataset.collection import Collection, DataSpec, ShardCatalog
from jetstore.errors import DatasetError, SchemaError
from jetstore.io.backend import capabilities_of
from jetstore.model.cells import CellRule
from jetstore.model.split import Split
from jetstore.sampler.batch import BatchBuilder
from jetstore.sampler.schemes import EpochRequest, EpochShape, Scheme, get_scheme
from jetstore.sampler.stream import StreamSpec
from jetstore.sampler.units import UnitTable, build_units
from jetstore.stats.result import StatsResult, read_stats

MAX_AHEAD = 512
LOCAL_IO_THREADS = 2


@dataclass(frozen=True)
class SamplerOptions:
    """How batches are drawn and read.

    seed: every random choice derives from it (with the epoch and the slot).
    training: the default scheme: ``weighted`` (weaver's sampling) when True, else ``sequential``.
    scheme: a registered scheme's name (:mod:`jetstore.sampler.schemes`), instead of the default.
    jets_per_epoch: epoch size (weighted: rescales the natural Σw epoch; None: natural).
    max_repeats: the most copies of one jet a sampling round gives (larger epochs span several rounds).
    read_factor: weighted epochs read this many times the units they need, keeping each one's rows thinned as
        much: epochs far smaller than the data follow the target more closely (as an i.i.d. draw from 2-4) for
        as many times the bytes; 1 reads the fewest; ``"auto"`` chooses per (sample, class, pT bin) stratum: a
        whole number of its units per round, at least 2 (at most 16 times as many; 1 where it reads that already);
        None (the default): ``"auto"`` for natural epochs (no ``jets_per_epoch``), 1 for the others.
    split, holdout: ``all`` the jets, or ``train`` / ``holdout``: a fixed ``holdout`` fraction kept out.
    proportions: sample name → share of the delivered jets, instead of the samples' natural shares.
    observers: add the config's observers and ``_sample_`` (the jet's sample) to every batch.
    threads, io_threads: CPU threads decoding and preparing; requests kept in flight.
    max_inflight_mb: stored bytes read ahead at most.
    window_jets: rows held in the shuffle buffers before a batch is cut.
    bucket: True (or a number N): batches of jets of similar multiplicity, each with the class composition
        it would have had, every group with a length trimmed to the batch's longest jet (its block's own: PF
        and SV separately), at least N positions (1 for True; e.g. 17 for a ParticleNet of 16 neighbours);
        False / 0: random batches padded to the configured lengths. Unshuffled schemes (``sequential``) only
        trim. See docs/sampler.md.
    cache_dir: a node-local directory keeping what is read from object storage, shared by the node's ranks and
    workers (:mod:`jetstore.cache`); later epochs read it instead. cache_limit: the most it may take (bytes, or
    a size such as ``500G`` / ``2Ti``; None: until its disk is full).
    """

    seed: int = 0
    training: bool = True
    scheme: str | None = None
    jets_per_epoch: int | None = None
    max_repeats: int = 128
    read_factor: float | str | None = None
    split: str = "all"
    holdout: float = 0.1
    proportions: Mapping[str, float] | None = None
    observers: bool = False
    threads: int = 1
    io_threads: int = 16
    max_inflight_mb: float = 32
    window_jets: int = 32768
    bucket: bool | int = False
    cache_dir: str | None = None
    cache_limit: int | str | None = None

    def __post_init__(self) -> None:
        parse_size(self.cache_limit)
        for name in ("threads", "io_threads", "max_repeats", "window_jets"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise SchemaError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(self.bucket, int) or self.bucket < 0:
            raise SchemaError(f"bucket must be True, False or a non-negative integer, got {self.bucket!r}")
        if self.read_factor not in ("auto", None) and (not isinstance(self.read_factor, int | float) or isinstance(
                self.read_factor, bool) or not 1 <= self.read_factor < float("inf")):
            raise SchemaError(f"read_factor must be a number of at least 1, 'auto' or None, got {self.read_factor!r}")
        if self.jets_per_epoch is not None and (not isinstance(self.jets_per_epoch, int) or self.jets_per_epoch < 1):
            raise SchemaError(f"jets_per_epoch must be a positive integer or None, got {self.jets_per_epoch!r}")

    def with_overrides(self, **overrides: Any) -> SamplerOptions:
        """These options with some fields replaced (an unknown name is a one-line error)."""
        unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise TypeError(f"unknown sampler option(s): {', '.join(unknown)}")
        return dataclasses.replace(self, **overrides)


@dataclass(frozen=True)
class SamplerPlan:
    """The built sampler: what it reads and how an epoch is drawn."""

    collection: Collection
    config: TrainingConfig
    options: SamplerOptions
    scheme: Scheme
    stats: StatsResult | None
    builders: tuple[BatchBuilder, ...]  # per dataset of the collection
    spec: StreamSpec
    shape: EpochShape

    @property
    def units(self) -> UnitTable:
        return self.spec.units

    @property
    def stratify(self) -> bool:
        """Every batch has the target's (sample, class) composition: with a ``weights`` block or proportions."""
        return self.config.weights is not None or bool(self.options.proportions)


def build_plan(data: DataSpec | Collection, config: str | Path | TrainingConfig, batch_size: int,
               options: SamplerOptions, storage_options: Mapping[str, Any] | None = None,
               world_size: int = 1) -> SamplerPlan:
    """Open the data and make everything the sampler needs; no shard is read."""
    if not isinstance(batch_size, int) or batch_size < 1:
        raise SchemaError(f"batch_size must be a positive integer, got {batch_size!r}")
    config = config if isinstance(config, TrainingConfig) else load_training_config(config)
    collection = Collection.open(data, storage_options)
    check_agreement(collection, config)
    scheme = get_scheme(options.scheme or ("weighted" if options.training else "sequential"))
    rule = config.cell_rule()
    _check_classes(collection, rule)
    stats = _stats(collection, config, needed=bool(config.auto_variables) or (scheme.weighted and
                                                                               config.weights is not None))
    # stored stats standardise only the config's `auto` variables: a manual centre (an exported config's, a
    # trained model's) is never replaced by another dataset's stats
    auto = set(config.auto_variables)
    centers = {n: (v.center, v.scale) for n, v in stats.variables.items() if n in auto} if stats else {}
    builders = tuple(BatchBuilder(m.dataset.schema, config, centers, options.observers, int(options.bucket))
                     for m in collection)
    cell_weights = rule.cell_weights(stats.weight_tables if stats and config.weights else None)
    split = Split(options.split, options.holdout)
    units = build_units(collection, stats.unit_counts if stats else None, cell_weights, rule.n_classes,
                        options.proportions, len(rule.x_edges) - 1).scaled(split.share)
    shape = scheme.epoch(units, EpochRequest(options.jets_per_epoch, options.max_repeats, batch_size, world_size,
                                             collection.n_jets, options.read_factor))
    unit_bytes = collection.bytes / max(len(units), 1)
    ahead = int(np.clip(options.max_inflight_mb * 2**20 / max(unit_bytes, 1), 2 * options.threads, MAX_AHEAD))
    io_threads = options.io_threads
    if all(capabilities_of(m.url).cheap_requests for m in collection):  # microseconds a read: a few threads suffice
        io_threads = min(io_threads, LOCAL_IO_THREADS)
    cache = DiskCache.open(options.cache_dir, options.cache_limit) if options.cache_dir else None
    catalog = ShardCatalog.of(collection, cache)
    spec = StreamSpec(catalog, units, rule, cell_weights, batch_size, options.seed, shape.scale,
                      options.threads, io_threads, ahead, options.window_jets, split,
                      int(options.bucket))
    return SamplerPlan(collection, config, options, scheme, stats, builders, spec, shape)


def _check_classes(collection: Collection, rule: CellRule) -> None:
    """Refuse data whose manifests count no jet of the config's classes (nothing could ever be sampled)."""
    if not rule.classes:  # custom labels: every jet is in the one class
        return
    counted = [m.dataset.manifest.class_counts for m in collection]
    if all(set(rule.classes) <= set(m.dataset.schema.label_names) for m in collection) \
            and not any(counts.get(name, 0) for counts in counted for name in rule.classes):
        raise DatasetError(f"{collection.url}: no jet carries one of the config's classes ({', '.join(rule.classes)}); "
                           "nothing can be sampled (check labels.value and weights.reweight_classes)")


def _stats(collection: Collection, config: TrainingConfig, needed: bool) -> StatsResult | None:
    """The stored stats of the config for these data; None when missing and not needed."""
    try:
        return read_stats(collection, config.hash)
    except DatasetError:
        if needed:
            raise
        return None
