"""The batches each rank trains on, epoch after epoch, from DataLoaders kept for the whole run (persistent
workers), and where an epoch stands (:class:`Position`, in every checkpoint).

An epoch is dealt as one stream of batches per rank of the world it started in, each read with that world's
DataLoader workers (the sampler's slots). A rank takes ``steps × --grad-accum`` batches of its stream (the few
left over would not fill an optimizer step: a batch ``--grad-accum`` times larger would not have them either).

A resume in the same world continues every stream where it stopped. A resume in another world (more or fewer
ranks, other ``--workers``) finishes the interrupted epoch with the same streams, re-dealt: the batches none has
taken, in a fixed order (batch i of stream r before batch i of stream r + 1, before batch i + 1 of stream 0), go
round robin to the new ranks, each rank reading the old streams it needs. No batch is lost or taken twice, but
the last ones that would not give every rank a whole step (fewer than ranks × --grad-accum). The next epochs are
dealt in the new world."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.utils.data

from jetstore import JetDataset
from jetstore.errors import JetstoreError
from jetstore.sampler.world import World

Batch = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Position:
    """Where an epoch stands: its streams (one per rank of ``world_size`` ranks, each read by ``slots`` loading
    processes), the batches every stream had given when last dealt, and the batches of the re-dealt remainder
    taken since by all ranks together (``offset``; 0 while the epoch runs in the world it started in)."""

    epoch: int = 0
    world_size: int = 1
    slots: int = 1
    batches: int = 0
    offset: int = 0

    def to_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Position:
        try:
            position = cls(**{f.name: int(values[f.name]) for f in dataclasses.fields(cls)})
        except (KeyError, TypeError, ValueError):
            raise JetstoreError(f"a checkpoint's sampler position is not valid: {values!r:.200}") from None
        if min(position.epoch, position.batches, position.offset) < 0 or min(position.world_size, position.slots) < 1:
            raise JetstoreError(f"a checkpoint's sampler position is not valid: {values!r:.200}")
        return position


class SharedEpoch(torch.utils.data.IterableDataset):
    """A JetDataset whose epoch and resume position reach persistent DataLoader workers: they keep the copy of
    the dataset they started with, so both travel in a small shared-memory tensor read at every iteration."""

    def __init__(self, dataset: JetDataset):
        super().__init__()
        self.dataset = dataset
        self.position = torch.zeros(3, dtype=torch.int64).share_memory_()  # epoch, batches, slots

    def set(self, epoch: int, batches: int = 0, slots: int = 1) -> None:
        self.position.copy_(torch.tensor([epoch, batches, slots]))

    def __len__(self) -> int:
        return len(self.dataset)

    def __iter__(self) -> Iterator[Batch]:
        epoch, batches, slots = self.position.tolist()
        self.dataset.set_epoch(epoch)
        if batches:
            self.dataset.load_state_dict({"epoch": epoch, "batches": batches, "num_workers": slots})
        return iter(self.dataset)


def loader(dataset: torch.utils.data.IterableDataset, workers: int, device: torch.device, seed: int,
           persistent: bool = True) -> torch.utils.data.DataLoader:
    """A DataLoader of ready batches; its own generator, so creating its iterators draws nothing from the global
    random state (dropout after a resume equals the uninterrupted run's)."""
    return torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=workers,
                                       persistent_workers=persistent and workers > 0,
                                       pin_memory=device.type == "cuda",
                                       generator=torch.Generator().manual_seed(seed))


class Feed:
    """This rank's training batches. ``make(world)``: the run's training dataset for another world (streams of
    an epoch begun with another world size)."""

    def __init__(self, dataset: JetDataset, make: Callable[[World], JetDataset], workers: int, grad_accum: int,
                 rank: int, world: int, device: torch.device, seed: int):
        self.view = SharedEpoch(dataset)
        self.loader = loader(self.view, workers, device, seed)
        self.make, self.workers, self.k = make, workers, grad_accum
        self.rank, self.world, self.device, self.seed = rank, world, device, seed
        self.slots = max(1, workers)
        self.length = len(dataset)  # batches of every rank's stream in an epoch
        self._lengths: dict[int, int] = {world: self.length}

    @property
    def steps_per_epoch(self) -> int:
        return self.length // self.k

    def start(self, epoch: int) -> Position:
        return Position(epoch, self.world, self.slots)

    def native(self, position: Position) -> bool:
        """Does the epoch run in the world it started in (each rank on its own stream)?"""
        return (position.world_size, position.slots) == (self.world, self.slots) and position.offset == 0

    def stream_length(self, world_size: int) -> int:
        if world_size not in self._lengths:
            self._lengths[world_size] = len(self.make(World(0, world_size)))
        return self._lengths[world_size]

    def left(self, position: Position) -> int:
        """Batches of the epoch no rank has taken (in the epoch's own streams)."""
        per_stream = self.stream_length(position.world_size)
        return max(0, position.world_size * (per_stream - position.batches) - position.offset)

    def steps(self, position: Position) -> int:
        """Optimizer steps every rank takes in the rest of the epoch."""
        if self.native(position):
            return (self.length - position.batches) // self.k
        return self.left(position) // (self.world * self.k)

    def advanced(self, position: Position, taken: int) -> Position:
        """The position after every rank took ``taken`` more batches."""
        if self.native(position):
            return dataclasses.replace(position, batches=position.batches + taken)
        return dataclasses.replace(position, offset=position.offset + taken * self.world)

    def batches(self, position: Position) -> Iterator[Batch]:
        """This rank's batches of the rest of the epoch: ``steps × --grad-accum`` of them."""
        count = self.steps(position) * self.k
        if self.native(position):
            self.view.set(position.epoch, position.batches, self.slots)
            return itertools.islice(iter(self.loader), count)
        return itertools.islice(self._redealt(position), count)

    def _redealt(self, position: Position) -> Iterator[Batch]:
        """The remainder of an epoch begun in another world: item j of the remaining batches (stream j mod W,
        batch ``batches`` + j div W) goes to rank (j − offset) mod (this world's size)."""
        old, per_stream = position.world_size, self.stream_length(position.world_size)
        streams: dict[int, tuple[Iterator[Batch], list[int]]] = {}
        item = position.offset + self.rank
        while True:
            stream, index = item % old, position.batches + item // old
            if index >= per_stream:
                return
            if stream not in streams:  # opened at the first batch this rank takes from it
                streams[stream] = (self._stream(position, stream, index), [index])
            batches, at = streams[stream]
            while at[0] < index:  # another rank's batch of this stream
                next(batches)
                at[0] += 1
            yield next(batches)
            at[0] += 1
            item += self.world

    def _stream(self, position: Position, rank: int, start: int) -> Iterator[Batch]:
        dataset = self.make(World(rank, position.world_size))
        dataset.set_epoch(position.epoch)
        if start:
            dataset.load_state_dict({"epoch": position.epoch, "batches": start, "num_workers": position.slots})
        workers = position.slots if position.slots > 1 else 0
        return iter(loader(dataset, workers, self.device, self.seed + 1 + rank, persistent=False))
