"""``JetDataset``: a torch IterableDataset of ready batches, sampled with the data's stored stats."""

from __future__ import annotations

import collections
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.utils.data

from jetstore.config.weaver import TrainingConfig
from jetstore.dataset.collection import Collection, DataSpec
from jetstore.errors import DatasetError
from jetstore.sampler import kernels
from jetstore.sampler.arena import Arena
from jetstore.sampler.batch import Allocator
from jetstore.sampler.handover import Block, Handover, padded, tensor_of, torch_dtype
from jetstore.sampler.sampler_plan import SamplerOptions, SamplerPlan, build_plan
from jetstore.sampler.schemes import EpochParams
from jetstore.sampler.stream import SlotStream
from jetstore.sampler.world import World, batches_before

STATE_KEYS = ("seed", "world_size", "batch_size", "scheme", "split", "holdout", "read_factor", "bucket", "data")


class JetDataset(torch.utils.data.IterableDataset):
    """Class-balanced, pT-eta-flattened, padded and standardised batches from one or several jetstore datasets.

    Parameters
    ----------
    data
        A dataset URL (local path or ``s3://``), ``NAME:URL``, a list of them, or a mapping sample name → URL:
        several datasets (one per physics sample, as weaver's ``--data-train NAME:files`` groups) are read as
        one, every jet knowing its sample (``_sample_`` in batches with ``observers=True``, names in
        :attr:`sample_names`).
    config
        A weaver-core data-config (path or parsed); its stats must have been computed (``jetstore stats``) on
        the same data when it standardises automatically or has a ``weights`` block.
    batch_size
        Jets per batch.
    options
        :class:`~jetstore.sampler.sampler_plan.SamplerOptions`; any of its fields may also be given as a keyword
        (``seed=1, jets_per_epoch=10_000_000, threads=4, split="train"``...).
    world
        Rank and world size (default: from ``torch.distributed`` or ``RANK`` / ``WORLD_SIZE``).
    pin_memory
        Allocate batches in page-locked memory (fast, asynchronous copies to a GPU).
    storage_options
        fsspec options for the data (S3 endpoint, credentials; default: the ``AWS_*`` environment).

    Notes
    -----
    Use as ``DataLoader(ds, batch_size=None)``: one process reads with ``threads`` CPU threads, no DataLoader
    workers needed (workers work too). Each item is a dict: one float32 tensor per ``inputs`` group of the
    config (``[B, C, L]``, or ``[B, C]`` without ``length``), ``_label_`` (int64 class index) for simple labels or
    one float32 tensor per custom label, and the observers with ``observers=True``. The ``weighted`` scheme
    (default when training) follows weaver's semantics: a jet of weight w is used s·w times per epoch in
    expectation, every batch has the target's class (and sample) composition, every rank yields ``len(ds)``
    batches; ``sequential`` (default otherwise) reads every selected jet once. Deterministic in (seed, epoch,
    world size, workers); ``set_epoch`` changes the order; ``state_dict`` / ``load_state_dict`` resume mid-epoch
    exactly.
    """

    def __init__(self, data: DataSpec | Collection, config: str | Path | TrainingConfig, batch_size: int,
                 options: SamplerOptions | None = None, *, world: World | None = None, pin_memory: bool = False,
                 storage_options: Mapping[str, Any] | None = None, **overrides: Any):
        super().__init__()
        options = (options or SamplerOptions()).with_overrides(**overrides)
        self.world, self.pin_memory = world, pin_memory
        self.plan: SamplerPlan = build_plan(data, config, batch_size, options, storage_options,
                                            (world or World.detect()).world_size)
        self.epoch = 0
        self._resume: dict[str, Any] | None = None
        self._consumed = 0
        self._arenas: tuple[int, Arena | None] = (-1, None)
        self._batch_bytes = 0  # the largest batch so far (a worker's shared block for the next one)
        self._handover = Handover()  # made before DataLoader workers start: their blocks' shared table
        kernels.warm()  # (DataLoader workers forked later inherit numba loaded)
        self._blocks: collections.deque[Block] = collections.deque()  # a worker's blocks of the batches cut
        self.last_stream: SlotStream | None = None

    # -- what it reads -----------------------------------------------------------------------------------

    @property
    def config(self) -> TrainingConfig:
        return self.plan.config

    @property
    def stats(self):
        return self.plan.stats

    @property
    def spec(self):
        return self.plan.spec

    @property
    def scheme(self):
        return self.plan.scheme

    @property
    def sample_names(self) -> tuple[str, ...]:
        """The samples, indexed by the ``_sample_`` observer."""
        return self.plan.collection.samples

    # -- epochs and state ----------------------------------------------------------------------------------

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _params(self, world: World) -> EpochParams:
        plan = self.plan
        return EpochParams(plan.options.seed, self.epoch, plan.spec.batch_size, world.world_size, world.num_workers,
                           plan.shape.scale, plan.shape.rounds, stratify=plan.stratify,
                           read_factor=plan.shape.read_factor)

    def __len__(self) -> int:
        """Batches this rank yields in this epoch, with any number of DataLoader workers (a training loop
        takes ``len(loader)`` steps per epoch)."""
        batches = self.scheme.batches(self.spec.units, self._params(self.world or World.detect()))
        if batches is None:
            raise TypeError(f"a JetDataset with the '{self.scheme.name}' scheme has no fixed length")
        return batches

    def _identity(self) -> dict[str, Any]:
        """What a saved position is only valid for."""
        plan = self.plan
        return {"seed": plan.options.seed, "world_size": (self.world or World.detect()).world_size,
                "batch_size": plan.spec.batch_size, "scheme": plan.scheme.name, "split": plan.options.split,
                "holdout": plan.options.holdout, "read_factor": plan.options.read_factor,
                "bucket": bool(plan.options.bucket), "data": plan.collection.identity}

    def state_dict(self, batches_consumed: int | None = None, num_workers: int | None = None) -> dict[str, Any]:
        """Position to resume from: this rank has consumed ``batches_consumed`` batches of this epoch (counted
        automatically when iterating without DataLoader workers), read with ``num_workers`` DataLoader workers
        (the batches depend on it; checked on resume when given)."""
        consumed = self._consumed if batches_consumed is None else batches_consumed
        state = {"epoch": self.epoch, "batches": int(consumed), **self._identity()}
        if num_workers is not None:
            state["num_workers"] = int(num_workers)
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume at a saved position; a state saved for other data, seed, world size, batch size, scheme or
        split, or a position past the epoch's end, is refused with one line saying what differs."""
        ours = self._identity()
        for key in STATE_KEYS:
            if key in state and state[key] != ours[key]:
                raise DatasetError(f"the sampler state was saved with {key} {state[key]!r}, this dataset has "
                                   f"{ours[key]!r}: it cannot resume there")
        epoch, batches = state.get("epoch"), state.get("batches")
        if not isinstance(epoch, int) or not isinstance(batches, int) \
                or any(isinstance(v, bool) or v < 0 for v in (epoch, batches)):
            raise DatasetError(f"the sampler state's position (epoch {epoch!r}, batch {batches!r}) is not valid")
        self.epoch = epoch
        limit = self._max_batches()
        if batches > limit:
            raise DatasetError(f"the sampler state's position (batch {batches}) is past the end of epoch {epoch} "
                               f"({limit} batches per rank)")
        self._resume = {"epoch": epoch, "batches": batches, "num_workers": state.get("num_workers")}

    def _max_batches(self) -> int:
        """The most batches a rank can yield this epoch."""
        try:
            return len(self)
        except TypeError:  # a scheme without a fixed length: every selected jet once at most
            return -(-int(self.spec.units.total.sum() + 1) // self.spec.batch_size) + 1

    # -- iteration -----------------------------------------------------------------------------------------

    def __iter__(self):
        base = self.world or World.detect()
        resume = self._resume if self._resume and self._resume["epoch"] == self.epoch else None
        skip_rank = resume["batches"] if resume else 0
        self._resume = None
        info = torch.utils.data.get_worker_info()  # DataLoader workers override a given world's worker fields
        workers = info.num_workers if info is not None else 1
        if resume and resume.get("num_workers") not in (None, workers):
            raise DatasetError(f"the sampler state was saved with {resume['num_workers']} DataLoader worker(s), "
                               f"this loader has {workers}: the batches would differ")
        world = base
        if info is not None:
            # the loader takes batches round-robin starting at worker 0: after resuming at batch N, worker 0
            # must play the role of worker N mod W so the next batch is the one that would have come
            world = World(base.rank, base.world_size, (info.id + skip_rank) % info.num_workers, info.num_workers)
        plan = self.scheme.plan(self.spec.units, self._params(world), world.rank, world.worker)
        skip = batches_before(skip_rank, world.worker, world.num_workers)
        stream = SlotStream(self.spec, self.plan.builders, plan, self.epoch, world.slot, skip, self._memory,
                            self._arena())
        self.last_stream = stream
        self._consumed = skip_rank
        while self._blocks:  # blocks of batches cut but never yielded (an epoch left early)
            self._blocks.popleft().release()
        for batch in stream:
            self._consumed += 1
            if info is not None:  # a DataLoader worker: the batch goes to the main process in its shared block
                self._batch_bytes = max(self._batch_bytes, sum(padded(v.nbytes) for v in batch.values()))
                yield self._blocks.popleft().batch(batch)
                continue
            yield {k: tensor_of(v) for k, v in batch.items()}

    def _arena(self) -> Arena:
        """This process's arena (DataLoader workers make their own), reused from epoch to epoch."""
        pid, arena = self._arenas
        if pid != os.getpid() or arena is None:
            arena = Arena(max(self.spec.window_jets, 2 * self.spec.batch_size))
            self._arenas = (os.getpid(), arena)
        return arena

    def _memory(self) -> Allocator:
        """The allocator of one batch's arrays: in a DataLoader worker, a block of shared memory for all of them,
        reused once the main process has dropped the batch it held (:mod:`~jetstore.sampler.handover`: the batch
        reaches the main process as one handle, neither pickled nor copied); else page-locked memory when
        ``pin_memory`` (fast, asynchronous copies to the GPU), or plain memory."""
        info = torch.utils.data.get_worker_info()
        if info is not None:
            block = self._handover.block(info.id, self._batch_bytes)
            self._blocks.append(block)
            return block
        if not self.pin_memory:
            return np.empty
        return lambda shape, dtype: torch.empty(shape, dtype=torch_dtype(dtype), pin_memory=True).numpy()


