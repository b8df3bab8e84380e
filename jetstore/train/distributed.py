"""What several ranks share and what each keeps: the process group (torchrun), objects gathered from every rank,
each rank's random state (CPU and CUDA), and a digest of its weights (every rank must hold the same)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import xxhash


def setup_distributed() -> tuple[int, int, torch.device]:
    """torchrun sets RANK / WORLD_SIZE / LOCAL_RANK; initialise the process group when there are several."""
    world = int(os.environ.get("WORLD_SIZE", 1))
    local = int(os.environ.get("LOCAL_RANK", 0))
    device = torch.device(f"cuda:{local}") if torch.cuda.is_available() else torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        if device.type == "cuda":
            torch.cuda.set_device(device)
    return (dist.get_rank() if dist.is_initialized() else 0), world, device


def gathered(value: Any) -> list[Any]:
    """``value`` of every rank, in rank order, on every rank (``[value]`` without a process group)."""
    if not dist.is_initialized():
        return [value]
    parts: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(parts, value)
    return parts


def rng_state(device: torch.device) -> dict[str, torch.Tensor | None]:
    """This rank's random state: torch's CPU generator and, on a GPU, the device's."""
    return {"cpu": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}


def set_rng_state(state: dict[str, torch.Tensor | None], device: torch.device) -> None:
    cpu, cuda = state["cpu"], state.get("cuda")
    assert cpu is not None  # always saved
    torch.set_rng_state(cpu)
    if device.type == "cuda" and cuda is not None:
        torch.cuda.set_rng_state(cuda, device)


def seed_rank(seed: int, rank: int, device: torch.device, *position: int) -> None:
    """A fresh random state for a rank no checkpoint has (a resume on more ranks than before)."""
    generator = np.random.default_rng([seed, rank, *position])
    value = int(generator.integers(2**62))
    torch.manual_seed(value)
    if device.type == "cuda":
        torch.cuda.manual_seed(value)


def weights_digest(model: torch.nn.Module) -> str:
    """A hash of every parameter (names and bytes). Buffers are left out: each rank updates its own running
    statistics in its forward passes, and DDP makes them equal again at the next one (rank 0's)."""
    digest = xxhash.xxh3_64()
    for name, tensor in model.named_parameters():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
