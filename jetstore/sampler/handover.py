"""Handing batches from DataLoader workers to the main process through shared memory that is reused.

A fresh block of shared memory per batch costs more than the batch itself (creating it, faulting and zeroing
its pages, passing its handle: ~6 µs per jet, as much as reading and preparing the jet). So each worker keeps
a few blocks (``BLOCKS``) and carves every batch's arrays out of one of them; the main process rebuilds the
batch's tensors as views of the block, and when the last of them is gone (torch keeps one Python object per
storage while any view lives) marks the block free again in a small table shared by all processes. A worker
takes a block only when the table says it is free, else allocates one that is not reused, so a batch the
training loop still holds is never overwritten.

The table holds, per (worker, block), 0 (free) or the identity of the batch using it (unique per worker
process and batch); the main process frees a block only if it still holds the identity it received, so a
batch of a worker that was replaced (non-persistent workers) never frees the block of its successor.
"""

from __future__ import annotations

import itertools
import os
import secrets
import weakref
from typing import Any

import numpy as np
import torch

BLOCKS = 8  # blocks reused per worker: the batches in flight (DataLoader prefetch) and the one being trained on
MAX_WORKERS = 256
ALIGN = 64  # every array starts on a cache line
TABLES: dict[int, np.ndarray] = {}  # in the main process: token of a Handover → its table


class Handover:
    """The shared table of a dataset's worker blocks (made in the main process, before the workers start), and,
    in a worker, its blocks."""

    def __init__(self):
        self.token = secrets.randbits(62)
        self.table = torch.zeros(MAX_WORKERS * BLOCKS, dtype=torch.int64).share_memory_()
        TABLES[self.token] = self.table.numpy()
        self._blocks: tuple[int, list[torch.Tensor]] = (os.getpid(), [])
        self._uses = itertools.count(1)
        self._process = secrets.randbits(30) << 32

    def __getstate__(self) -> dict[str, Any]:  # a spawned worker gets the table, not the blocks
        return {"token": self.token, "table": self.table}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.token, self.table = state["token"], state["table"]
        self._blocks, self._uses, self._process = (os.getpid(), []), itertools.count(1), secrets.randbits(30) << 32

    def block(self, worker: int, size: int) -> Block:
        """A block of at least ``size`` bytes for the next batch of ``worker``: a free one of its own (marked in
        use), else one that is not reused."""
        if self._blocks[0] != os.getpid():  # a forked worker: its own blocks and identities
            self._blocks, self._uses, self._process = (os.getpid(), []), itertools.count(1), secrets.randbits(30) << 32
        blocks = self._blocks[1]
        table = self.table.numpy()
        if size and worker < MAX_WORKERS:
            for index in range(BLOCKS):
                slot = worker * BLOCKS + index
                if table[slot] != 0:
                    continue
                if index == len(blocks):
                    blocks.append(_shared(size))
                elif len(blocks[index]) < size:
                    blocks[index] = _shared(size)
                use = self._process | next(self._uses)
                table[slot] = use
                return Block(blocks[index], self.token, slot, use)
        return Block(_shared(size), self.token, -1, 0)


class Block:
    """One batch's arrays carved out of a block of shared memory (an array that does not fit gets memory of its
    own). :meth:`batch` is what a worker yields: it reaches the main process as the block's handle and the arrays'
    places, and is rebuilt there as a dict of tensors."""

    def __init__(self, memory: torch.Tensor, token: int, slot: int, use: int):
        self.memory, self.token, self.slot, self.use = memory, token, slot, use
        self.used = 0
        self.places: dict[int, tuple[int, np.dtype, tuple[int, ...]]] = {}  # id(array) → (offset, dtype, shape)

    def __call__(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        dtype = np.dtype(dtype)
        count = int(np.prod(shape))
        nbytes = max(1, count) * dtype.itemsize
        if self.used + nbytes > len(self.memory):
            return _shared(nbytes).view(torch_dtype(dtype))[:count].view(shape).numpy()
        array = self.memory[self.used:self.used + nbytes].view(torch_dtype(dtype))[:count].view(shape).numpy()
        self.places[id(array)] = (self.used, dtype, tuple(shape))
        self.used += padded(nbytes)
        return array

    def batch(self, arrays: dict[str, np.ndarray]) -> HandedBatch:
        return HandedBatch(self, arrays)


class HandedBatch:
    """A worker's batch on its way to the main process (see the module's docstring)."""

    def __init__(self, block: Block, arrays: dict[str, np.ndarray]):
        self.block, self.arrays = block, arrays

    def __reduce__(self):
        places, others = {}, {}
        for name, array in self.arrays.items():
            place = self.block.places.get(id(array))
            if place is None:
                others[name] = tensor_of(array)
            else:
                places[name] = (place[0], place[1].str, place[2])
        storage = self.block.memory.untyped_storage() if places else None
        return _received, (storage, places, others, self.block.token, self.block.slot, self.block.use)


def _received(storage, places: dict, others: dict, token: int, slot: int, use: int) -> dict[str, torch.Tensor]:
    """Main process: the batch's tensors, views of the block; the block freed when the last of them is gone."""
    out = {}
    for name, (offset, dtype, shape) in places.items():
        kind = torch_dtype(np.dtype(dtype))
        out[name] = torch.empty(0, dtype=kind).set_(  # type: ignore[call-overload]  # torch's stubs require stride
            storage, offset // np.dtype(dtype).itemsize, shape)
    out.update(others)
    table = TABLES.get(token)
    if storage is not None and slot >= 0 and table is not None:
        weakref.finalize(storage, _free, table, slot, use)
    return out


def _free(table: np.ndarray, slot: int, use: int) -> None:
    if table[slot] == use:  # (else the block was already taken by another worker process since)
        table[slot] = 0


def padded(nbytes: int) -> int:
    """Bytes up to the next multiple of ``ALIGN``."""
    return -(-max(1, nbytes) // ALIGN) * ALIGN


def _shared(nbytes: int) -> torch.Tensor:
    return torch.empty(0, dtype=torch.uint8).set_(  # type: ignore[call-overload]  # as above
        torch.UntypedStorage._new_shared(max(1, nbytes)), 0, (max(1, nbytes),))


def torch_dtype(dtype: np.dtype) -> torch.dtype:
    return torch.from_numpy(np.empty(0, dtype)).dtype


def tensor_of(array: np.ndarray) -> torch.Tensor:
    """The tensor an array was allocated as (its base), else a view of it."""
    base = array.base
    if isinstance(base, torch.Tensor) and base.shape == array.shape:
        return base
    return torch.from_numpy(array)
