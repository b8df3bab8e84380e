"""``JetDataset``: a torch IterableDataset of ready batches, sampled with the dataset's stored stats."""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.utils.data

from jetstore.config.weaver import TrainingConfig, load_training_config
from jetstore.errors import DatasetError
from jetstore.sampler.arena import Arena
from jetstore.sampler.batch import BatchBuilder
from jetstore.sampler.schemes import EpochParams, get_scheme
from jetstore.sampler.split import Split
from jetstore.sampler.stream import SlotStream, StreamSpec
from jetstore.sampler.units import build_units
from jetstore.sampler.world import World, batches_before
from jetstore.stats.cells import CellRule
from jetstore.stats.result import StatsResult, read_stats
from jetstore.store import storage
from jetstore.store.dataset import Dataset

LOG = logging.getLogger(__name__)
MAX_AHEAD = 512
LOCAL_IO_THREADS = 2


class JetDataset(torch.utils.data.IterableDataset):
    """Class-balanced, pT-eta-flattened, padded and standardised batches from a jetstore dataset.

    Use as ``DataLoader(ds, batch_size=None)``: one process reads with ``threads`` CPU threads (and
    ``io_threads`` for requests in flight), no DataLoader workers needed; workers work too. Each item is a
    dict: one float32 tensor per ``inputs`` group of the config (``[B, C, L]``, or ``[B, C]`` without
    ``length``), ``_label_`` (int64 class index, -1 for a jet with no label) for simple labels or one float32
    tensor per custom label, and the observers when ``observers=True``.

    ``scheme`` names the sampling scheme (:mod:`jetstore.sampler.schemes`); by default ``weighted`` when
    ``training`` (weaver's semantics: a jet of weight w is used with probability w per epoch; ``jets_per_epoch``
    rescales, up-sampling with replacement where needed, in rounds giving no jet more than ``max_repeats``
    copies each; every batch has the config's class composition; every rank yields ``len(ds)`` batches,
    whatever the number of DataLoader workers), else ``sequential`` (every selected jet once, in dataset
    order, the last batch possibly short). Deterministic in (seed, epoch, world size, workers); ``set_epoch``
    changes the order; ``state_dict`` / ``load_state_dict`` resume mid-epoch exactly.

    ``split``: ``all`` the jets, or ``train`` / ``holdout``: a fixed ``holdout`` fraction of the jets (chosen per
    jet by a hash of input file and entry, :mod:`jetstore.sampler.split`) kept out of training for evaluation.
    """

    def __init__(self, url: str, config: str | Path | TrainingConfig, batch_size: int, seed: int = 0,
                 training: bool = True, jets_per_epoch: int | None = None, observers: bool = False,
                 storage_options: Mapping[str, Any] | None = None, scheme: str | None = None, threads: int = 1,
                 io_threads: int = 16, max_inflight_mb: float = 32, window_units: int = 16, max_repeats: int = 128,
                 world: World | None = None, pin_memory: bool = False, split: str = "all", holdout: float = 0.1):
        super().__init__()
        self.config = config if isinstance(config, TrainingConfig) else load_training_config(config)
        self.dataset = Dataset.open(url, storage_options)
        self.scheme = get_scheme(scheme or ("weighted" if training else "sequential"))
        weighted = self.scheme.name == "weighted"
        self.stats = self._stats(weighted)
        centers = {n: (v.center, v.scale) for n, v in self.stats.variables.items()} if self.stats else {}
        self.builder = BatchBuilder(self.dataset.schema, self.config, centers, observers)
        rule = CellRule.from_config(self.config) if self.stats is not None else CellRule(())
        cell_weights = rule.cell_weights(self.stats.weight_tables if self.stats and self.config.weights else None)
        manifest = self.dataset.manifest
        units = build_units(manifest, manifest.unit_jets, self.stats.unit_counts if self.stats else None,
                            cell_weights, rule.n_classes)
        self.split = Split(split, holdout)
        units = dataclasses.replace(units, expected=units.expected * self.split.share)
        total = float(units.expected.sum())
        if weighted and total <= 0:
            raise DatasetError(f"{url}: no jet has a non-zero sampling weight")
        world_size = (world or World.detect()).world_size
        if weighted and jets_per_epoch is None and total < batch_size * world_size:
            jets_per_epoch = manifest.n_jets
            LOG.warning("the natural weighted epoch of %s holds %.0f jets, less than a batch per rank (%d × %d); "
                        "epochs hold %d jets instead (the dataset's size): set jets_per_epoch to choose",
                        url, total, world_size, batch_size, jets_per_epoch)
        scale = jets_per_epoch / total if (weighted and jets_per_epoch) else 1.0
        # a round gives no jet more than max_repeats copies (bounding the pool); larger epochs span several
        # rounds, every jet scaled alike, so the sampling stays unbiased
        self.round_scale = min(scale, max_repeats / max(float(units.max_weight.max(initial=0.0)), 1e-12))
        self.epoch_rounds = scale / self.round_scale
        unit_bytes = manifest.bytes / max(len(units), 1)
        ahead = int(np.clip(max_inflight_mb * 2**20 / max(unit_bytes, 1), 2 * threads, MAX_AHEAD))
        if storage.is_local(url):  # local reads take microseconds: a few threads suffice
            io_threads = min(io_threads, LOCAL_IO_THREADS)
        self.spec = StreamSpec(self.dataset.source, manifest.shards, units, rule, cell_weights, batch_size, seed,
                               self.round_scale, threads, io_threads, ahead, window_units, self.split)
        self.world = world
        self.pin_memory = pin_memory
        self.epoch = 0
        self._resume: dict[str, int] | None = None
        self._consumed = 0
        self._arenas: tuple[int, Arena | None] = (-1, None)
        self.last_stream: SlotStream | None = None

    def _stats(self, weighted: bool) -> StatsResult | None:
        needs_stats = self.config.auto_variables or (weighted and self.config.weights is not None)
        try:
            return read_stats(self.dataset.fs, self.dataset.root, self.config.hash, self.dataset.manifest.plan_hash)
        except DatasetError:
            if needs_stats:
                raise
            return None

    # -- epochs and state ------------------------------------------------------------------------------

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _params(self, world: World) -> EpochParams:
        return EpochParams(self.spec.seed, self.epoch, self.spec.batch_size, world.world_size, world.num_workers,
                           self.round_scale, self.epoch_rounds, stratify=self.config.weights is not None)

    def __len__(self) -> int:
        """Batches this rank yields in this epoch, with any number of DataLoader workers (a training loop
        takes ``len(loader)`` steps per epoch)."""
        batches = self.scheme.batches(self.spec.units, self._params(self.world or World.detect()))
        if batches is None:
            raise TypeError(f"a JetDataset with the '{self.scheme.name}' scheme has no fixed length")
        return batches

    def state_dict(self, batches_consumed: int | None = None) -> dict[str, int]:
        """Position to resume from: this rank has consumed ``batches_consumed`` batches of this epoch
        (counted automatically when iterating without DataLoader workers)."""
        consumed = self._consumed if batches_consumed is None else batches_consumed
        return {"epoch": self.epoch, "batches": int(consumed), "seed": self.spec.seed}

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        if state.get("seed", self.spec.seed) != self.spec.seed:
            raise DatasetError(f"state was saved with seed {state['seed']}, this dataset has {self.spec.seed}")
        self.epoch = int(state["epoch"])
        self._resume = {"epoch": self.epoch, "batches": int(state["batches"])}

    # -- iteration -------------------------------------------------------------------------------------

    def __iter__(self):
        base = self.world or World.detect()
        skip_rank = self._resume["batches"] if self._resume and self._resume["epoch"] == self.epoch else 0
        self._resume = None
        info = torch.utils.data.get_worker_info()  # DataLoader workers override a given world's worker fields
        world = base
        if info is not None:
            # the loader takes batches round-robin starting at worker 0: after resuming at batch N, worker 0
            # must play the role of worker N mod W so the next batch is the one that would have come
            world = World(base.rank, base.world_size, (info.id + skip_rank) % info.num_workers, info.num_workers)
        plan = self.scheme.plan(self.spec.units, self._params(world), world.rank, world.worker)
        skip = batches_before(skip_rank, world.worker, world.num_workers)
        stream = SlotStream(self.spec, self.builder, plan, self.epoch, world.slot, skip, self._empty, self._arena())
        self.last_stream = stream
        self._consumed = skip_rank
        for batch in stream:
            self._consumed += 1
            yield {k: torch.from_numpy(v) for k, v in batch.items()}

    def _arena(self) -> Arena:
        """This process's arena (DataLoader workers make their own), reused from epoch to epoch."""
        if self._arenas[0] != os.getpid():
            rows = max(self.spec.window_units * self.spec.units.unit_jets, 2 * self.spec.batch_size)
            self._arenas = (os.getpid(), Arena(rows))
        return self._arenas[1]

    def _empty(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """Batch arrays: in page-locked memory when ``pin_memory`` (fast, asynchronous copies to the GPU)."""
        if not self.pin_memory:
            return np.empty(shape, dtype)
        return torch.empty(shape, dtype=torch.from_numpy(np.empty(0, dtype)).dtype, pin_memory=True).numpy()
