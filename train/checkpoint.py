"""Checkpoints (model, optimizer, scheduler, sampler state, step) on local disk or S3, written atomically.

A checkpoint holds tensors and plain Python data only, and is loaded with ``torch.load(weights_only=True)``:
a file that would need to run code to unpickle (a crafted ``latest.pt``) is refused, never executed."""

from __future__ import annotations

import io
from typing import Any

import torch

from jetstore.errors import DatasetError
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
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError for anything but tensors and plain data, or a damaged file
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise DatasetError(f"{url}/{LATEST}: not a loadable checkpoint (only tensors and plain "
                           f"data are accepted; nothing in it was run): {reason}") from None
    if not isinstance(state, dict):
        raise DatasetError(f"{url}/{LATEST}: not a checkpoint (expected a dict, got "
                           f"{type(state).__name__})")
    return state
