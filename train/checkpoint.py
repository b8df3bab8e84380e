"""Checkpoints (model, optimizer, scheduler, sampler state, step) on local disk or S3, written atomically."""

from __future__ import annotations

import io
from typing import Any

import torch

from jetstore.store import paths, storage

LATEST = "latest.pt"


def save_checkpoint(url: str, state: dict[str, Any], step: int) -> str:
    """Write ``step-<N>.pt`` and then ``latest.pt`` (one PUT each on S3; temp + rename locally)."""
    options = storage.resolve_storage_options(url)
    fs, root = storage.filesystem(url, options)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    data = buffer.getvalue()
    path = paths.join(root, f"step-{step:08d}.pt")
    storage.write_bytes_atomic(fs, path, data)
    storage.write_bytes_atomic(fs, paths.join(root, LATEST), data)
    return path


def load_checkpoint(url: str) -> dict[str, Any] | None:
    """The latest checkpoint under ``url`` (None if there is none)."""
    options = storage.resolve_storage_options(url)
    fs, root = storage.filesystem(url, options)
    try:
        data = fs.cat_file(paths.join(root, LATEST))
    except FileNotFoundError:
        return None
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)
