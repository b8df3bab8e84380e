"""``JetDataset``: a torch IterableDataset of ready batches, sampled with the dataset's stored stats."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.utils.data

from jetstore.config.weaver import TrainingConfig, load_training_config
from jetstore.errors import DatasetError
from jetstore.sampler.batch import BatchBuilder
from jetstore.sampler.plan import UnitTable, batches_before, build_units, slot_quota
from jetstore.sampler.stream import SlotStream, StreamSpec
from jetstore.sampler.world import World
from jetstore.stats.result import StatsResult, read_stats
from jetstore.store.dataset import Dataset


class JetDataset(torch.utils.data.IterableDataset):
    """Class-balanced, pT-eta-flattened, padded and standardised batches from a jetstore dataset.

    Use as ``DataLoader(ds, batch_size=None, num_workers=k, pin_memory=True)``. Each item is a dict: one
    float32 tensor per ``inputs`` group of the config (``[B, C, L]``, or ``[B, C]`` without ``length``),
    ``_label_`` (int64) for simple labels or one float32 tensor per custom label, and the observers when
    ``observers=True``.

    ``training=True`` samples with weaver's semantics (a jet of weight w is used with probability w per
    epoch; ``jets_per_epoch`` rescales, up-sampling with replacement where needed, in rounds giving no jet
    more than ``max_repeats`` copies each) and shuffles; every
    rank yields ``len(ds)`` batches per epoch. ``training=False`` yields every selected jet once, in
    dataset order, the last batch possibly short. Deterministic in (seed, epoch, world size, workers);
    ``set_epoch`` changes the order; ``state_dict`` / ``load_state_dict`` resume mid-epoch exactly.
    """

    def __init__(self, url: str, config: str | Path | TrainingConfig, batch_size: int, seed: int = 0,
                 training: bool = True, jets_per_epoch: int | None = None, observers: bool = False,
                 storage_options: Mapping[str, Any] | None = None, window_units: int = 8, prefetch: int = 4,
                 max_repeats: int = 128, world: World | None = None):
        super().__init__()
        self.config = config if isinstance(config, TrainingConfig) else load_training_config(config)
        self.dataset = Dataset.open(url, storage_options)
        self.stats = self._stats(training)
        centers = {n: (v.center, v.scale) for n, v in self.stats.variables.items()} if self.stats else {}
        self.builder = BatchBuilder(self.dataset.schema, self.config, centers, observers)
        weights = self.config.weights if training else None
        cell_weights = (np.stack([self.stats.weight_tables[c] for c in weights.classes]).ravel().astype(np.float64)
                        if weights is not None else None)
        units = self._units(cell_weights)
        total = float(units.expected.sum())
        if training and total <= 0:
            raise DatasetError(f"{url}: no jet has a non-zero sampling weight")
        scale = jets_per_epoch / total if (training and jets_per_epoch) else 1.0
        # a round gives no jet more than max_repeats copies (bounding the pool's copy references); larger
        # epochs span several rounds, every jet scaled alike, so the sampling stays unbiased
        round_scale = min(scale, max_repeats / max(float(units.max_weight.max(initial=0.0)), 1e-12))
        self.spec = StreamSpec(self.dataset.source, self.dataset.manifest.shards, units,
                               np.ones(1) if cell_weights is None else cell_weights, weights,
                               round_scale, scale / round_scale, batch_size, seed, training, window_units, prefetch)
        self.world = world
        self.epoch = 0
        self._resume: dict[str, int] | None = None
        self._consumed = 0
        self.last_stream: SlotStream | None = None

    def _stats(self, training: bool) -> StatsResult | None:
        needs_stats = self.config.auto_variables or (training and self.config.weights is not None)
        try:
            return read_stats(self.dataset.fs, self.dataset.root, self.config.hash, self.dataset.manifest.plan_hash)
        except DatasetError:
            if needs_stats:
                raise
            return None

    def _units(self, cell_weights: np.ndarray | None) -> UnitTable:
        if self.stats is not None and self.stats.unit_counts:
            return build_units(self.dataset.manifest, self.stats.unit_jets, self.stats.unit_counts, cell_weights)
        size = int(self.dataset.manifest.options.get("layout", {}).get("chunk_jets", 2048))
        return build_units(self.dataset.manifest, size, None, None)  # no stats: every stored jet, weight 1

    # -- epochs and state ------------------------------------------------------------------------------

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        """Batches per rank in this epoch (training); pass ``num_workers`` to the world or let a
        DataLoader worker count apply (the count is computed per slot)."""
        if not self.spec.training:
            raise TypeError("an evaluation JetDataset has no fixed length")
        world = self.world or World.detect()
        return self._slot_quota(world.world_size * world.num_workers) * world.num_workers

    def rank_batches(self, num_workers: int) -> int:
        """Batches per rank in this epoch when read by ``num_workers`` DataLoader workers (0 counts as 1)."""
        world = self.world or World.detect()
        workers = max(1, num_workers)
        return self._slot_quota(world.world_size * workers) * workers

    def _slot_quota(self, num_slots: int) -> int:
        spec = self.spec
        return slot_quota(spec.units, spec.scale, spec.batch_size, num_slots, spec.seed, self.epoch, spec.epoch_rounds)

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
        quota = self._slot_quota(world.num_slots) if self.spec.training else None
        skip = batches_before(skip_rank, world.worker, world.num_workers)
        stream = SlotStream(self.spec, self.builder, world, self.epoch, quota, skip)
        self.last_stream = stream
        self._consumed = skip_rank
        for batch in stream:
            self._consumed += 1
            yield {k: torch.from_numpy(v) for k, v in batch.items()}
