"""Handing batches from DataLoader workers to the main process through shared memory that is reused.

A fresh block of shared memory per batch costs more than the batch itself (creating it, faulting and zeroing
its pages, passing its handle: ~6 µs per jet, as much as reading and preparing the jet). Passing even a reused
block's handle costs ~3 µs per jet in the two processes: torch sends a file descriptor over an authenticated
socket per batch, and the main process maps the block anew and faults its pages in. So each worker keeps a few
blocks (``BLOCKS``), carves every batch's arrays out of one of them, and sends a block's handle once, with its
first batch; the main process keeps the block mapped and later batches name it by slot. The main process
rebuilds a batch's tensors as views of one storage of its own over the batch's bytes, and when the last view is
gone (the storage frees its bytes) marks the block free again in a small table shared by all processes. A worker
takes a block only when the table says it is free, else allocates one that is not reused, so a batch the
training loop still holds is never overwritten.

The table holds, per (worker, block), 0 (free) or the identity of the batch using it (unique per worker
process and batch); the main process frees a block only if it still holds the identity it received, so a
batch of a worker that was replaced (non-persistent workers) never frees the block of its successor.
"""

from __future__ import annotations

import functools
import itertools
import os
import secrets
import weakref
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

BLOCKS = 8  # blocks reused per worker: the batches in flight (DataLoader prefetch) and the one being trained on
MAX_WORKERS = 256
ALIGN = 64  # every array starts on a cache line
PROCESS_BITS = 32  # a batch's identity: (worker process << PROCESS_BITS) | batch number
RECEIVERS: dict[int, Receiver] = {}  # in the main process: token of a Handover → what it received


@dataclass
class Receiver:
    """The main process's side of a Handover: the shared table, and the blocks it has mapped, by slot (with the
    worker process that owns each)."""

    table: np.ndarray
    blocks: dict[int, tuple[int, np.ndarray]] = field(default_factory=dict)


@dataclass
class _OwnBlock:
    """A worker's block: its shared memory, as bytes, and whether the main process has its handle yet."""

    memory: torch.Tensor
    bytes: np.ndarray
    announced: bool = False

    @classmethod
    def of_size(cls, nbytes: int) -> _OwnBlock:
        memory = _shared(nbytes)
        return cls(memory, memory.numpy())


class Handover:
    """The shared table of a dataset's worker blocks (made in the main process, before the workers start), and,
    in a worker, its blocks."""

    def __init__(self):
        self.token = secrets.randbits(62)
        self.table = torch.zeros(MAX_WORKERS * BLOCKS, dtype=torch.int64).share_memory_()
        RECEIVERS[self.token] = Receiver(self.table.numpy())
        weakref.finalize(self, RECEIVERS.pop, self.token, None)
        self._own()

    def __getstate__(self) -> dict[str, Any]:  # a spawned worker gets the table, not the blocks
        return {"token": self.token, "table": self.table}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.token, self.table = state["token"], state["table"]
        self._own()

    def _own(self) -> None:
        """This process's blocks and batch identities (a forked worker starts its own)."""
        self._pid, self._blocks = os.getpid(), dict[int, _OwnBlock]()  # by index
        self._uses, self._process = itertools.count(1), secrets.randbits(30) << PROCESS_BITS

    def block(self, worker: int, size: int) -> Block:
        """A block of at least ``size`` bytes for the next batch of ``worker``: a free one of its own (marked in
        use), else one that is not reused."""
        if self._pid != os.getpid():
            self._own()
        table = self.table.numpy()
        if size and worker < MAX_WORKERS:
            for index in range(BLOCKS):
                slot = worker * BLOCKS + index
                if table[slot] != 0:
                    continue
                if index not in self._blocks or len(self._blocks[index].bytes) < size:
                    self._blocks[index] = _OwnBlock.of_size(size)
                use = self._process | next(self._uses)
                table[slot] = use
                return Block(self._blocks[index], self.token, slot, use, table)
        return Block(_OwnBlock.of_size(size), self.token, -1, 0, table)


class Block:
    """One batch's arrays carved out of a block of shared memory (an array that does not fit gets memory of its
    own). :meth:`batch` is what a worker yields: it reaches the main process as the block's slot (and its handle
    the first time) and the arrays' places, and is rebuilt there as a dict of tensors."""

    def __init__(self, own: _OwnBlock, token: int, slot: int, use: int, table: np.ndarray):
        self.own, self.token, self.slot, self.use, self.table = own, token, slot, use, table
        self.used = 0
        self.places: dict[int, tuple[int, np.dtype, tuple[int, ...]]] = {}  # id(array) → (offset, dtype, shape)

    def __call__(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        dtype = np.dtype(dtype)
        count = int(np.prod(shape))
        nbytes = max(1, count) * dtype.itemsize
        if self.used + nbytes > len(self.own.bytes):
            return _shared(nbytes).view(torch_dtype(dtype))[:count].view(shape).numpy()
        array = self.own.bytes[self.used:self.used + nbytes].view(dtype)[:count].reshape(shape)
        self.places[id(array)] = (self.used, dtype, tuple(shape))
        self.used += padded(nbytes)
        return array

    def batch(self, arrays: dict[str, np.ndarray]) -> HandedBatch:
        return HandedBatch(self, arrays)

    def release(self) -> None:
        """Give the block back unsent (the batch cut into it was never yielded)."""
        if self.slot >= 0 and self.table[self.slot] == self.use:
            self.table[self.slot] = 0


class HandedBatch:
    """A worker's batch on its way to the main process (see the module's docstring)."""

    def __init__(self, block: Block, arrays: dict[str, np.ndarray]):
        self.block, self.arrays = block, arrays

    def __reduce__(self):
        block = self.block
        places, others = {}, {}
        for name, array in self.arrays.items():
            place = block.places.get(id(array))
            if place is None:
                others[name] = tensor_of(array)
            else:
                places[name] = (place[0], place[1].str, place[2])
        storage = None
        if places and (block.slot < 0 or not block.own.announced):
            storage = block.own.memory.untyped_storage()
            block.own.announced = True
        return _received, (storage, block.used, places, others, block.token, block.slot, block.use)


def _received(storage, used: int, places: dict, others: dict, token: int, slot: int,
              use: int) -> dict[str, torch.Tensor]:
    """Main process: the batch's tensors, views of one storage over the batch's bytes of the block; the block
    freed when the last of them is gone."""
    out: dict[str, torch.Tensor] = {}
    if places:
        receiver = RECEIVERS.get(token)
        memory = _mapped(receiver, storage, slot, use)
        window = memory[:used]  # a new array, kept by the batch's storage until its last view is gone
        batch = torch.from_numpy(window).untyped_storage()
        for name, (offset, dtype, shape) in places.items():
            out[name] = torch.empty(0, dtype=torch_dtype(dtype)).set_(  # type: ignore[call-overload]
                batch, offset // np.dtype(dtype).itemsize, shape)  # (torch's stubs require stride)
        if slot >= 0 and receiver is not None:
            weakref.finalize(window, _free, receiver.table, slot, use)
    out.update(others)
    return out


def _mapped(receiver: Receiver | None, storage, slot: int, use: int) -> np.ndarray:
    """The bytes of the block a batch came in: mapped from its handle when sent along (and kept for the worker's
    later batches), else the block this process kept for its slot."""
    process = use >> PROCESS_BITS
    if storage is not None:
        memory = torch.empty(0, dtype=torch.uint8).set_(  # type: ignore[call-overload]  # as above
            storage, 0, (storage.nbytes(),)).numpy()
        if slot >= 0 and receiver is not None:
            receiver.blocks[slot] = (process, memory)
        return memory
    kept = receiver.blocks.get(slot) if receiver is not None else None
    if kept is None or kept[0] != process:
        raise RuntimeError(f"a DataLoader worker's batch names shared block {slot} of its dataset, which this "
                           "process never received (batches of one JetDataset must be unpickled in the process "
                           "that made the DataLoader)")
    return kept[1]


def _free(table: np.ndarray, slot: int, use: int) -> None:
    if table[slot] == use:  # (else the block was already taken by another worker process since)
        table[slot] = 0


def padded(nbytes: int) -> int:
    """Bytes up to the next multiple of ``ALIGN``."""
    return -(-max(1, nbytes) // ALIGN) * ALIGN


def _shared(nbytes: int) -> torch.Tensor:
    return torch.empty(0, dtype=torch.uint8).set_(  # type: ignore[call-overload]  # as above
        torch.UntypedStorage._new_shared(max(1, nbytes)), 0, (max(1, nbytes),))


@functools.cache
def torch_dtype(dtype: np.dtype | str) -> torch.dtype:
    return torch.from_numpy(np.empty(0, dtype)).dtype


def tensor_of(array: np.ndarray) -> torch.Tensor:
    """The tensor an array was allocated as (its base), else a view of it."""
    base = array.base
    if isinstance(base, torch.Tensor) and base.shape == array.shape:
        return base
    return torch.from_numpy(array)
