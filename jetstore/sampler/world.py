"""Where this process sits: DDP rank / world size and DataLoader worker id / count."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class World:
    """Ranks × DataLoader workers; each (rank, worker) pair is one slot that reads its own units."""

    rank: int = 0
    world_size: int = 1
    worker: int = 0
    num_workers: int = 1

    @property
    def slot(self) -> int:
        return self.rank * self.num_workers + self.worker

    @property
    def num_slots(self) -> int:
        return self.world_size * self.num_workers

    @classmethod
    def detect(cls) -> World:
        """From torch.distributed when initialised, else ``RANK`` / ``WORLD_SIZE``; plus the worker info."""
        import torch.distributed as dist
        import torch.utils.data

        if dist.is_available() and dist.is_initialized():
            rank, world_size = dist.get_rank(), dist.get_world_size()
        else:
            rank, world_size = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        return cls(rank, world_size, worker, workers)


def batches_before(consumed: int, worker: int, num_workers: int) -> int:
    """Of the first ``consumed`` batches of a rank, how many came from ``worker`` (the DataLoader takes
    batches from its workers round-robin)."""
    return max(0, (consumed - worker + num_workers - 1) // num_workers)
