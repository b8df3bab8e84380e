"""Checkpoints (model, optimizer, scheduler, sampler state, step) and model files (the best and the last
epoch's weights, plain state_dicts as weaver-core writes them) on local disk or S3, written atomically.

A checkpoint holds tensors and plain Python data only, and is loaded with ``torch.load(weights_only=True)``:
a file that would need to run code to unpickle (a crafted ``latest.pt``) is refused, never executed. Before torch
reads it, its zip directory is checked: torch.save stores its records uncompressed, so a compressed record, or
records declaring more bytes than the file holds (a small file inflating to gigabytes), is refused before
anything is decompressed. Storage failures are one-line :class:`StorageError` naming the checkpoint URL."""

from __future__ import annotations

import io
import zipfile
from typing import Any

import torch

from jetstore.errors import DatasetError
from jetstore.store import paths, storage
from jetstore.store.backend import write_bytes_atomic

LATEST = "latest.pt"
BEST_MODEL = "best_model.pt"
LAST_MODEL = "last_model.pt"
MAX_RECORDS = 100_000  # torch.save writes one record per tensor storage, and a few more


def _write(url: str, name: str, value: Any) -> str:
    options = storage.resolve_storage_options(url)
    with storage.access(url, options):
        fs, root = storage.filesystem(url, options)
        buffer = io.BytesIO()
        torch.save(value, buffer)
        path = paths.join(root, name)
        write_bytes_atomic(fs, path, buffer.getvalue())
    return path


def _read(url: str, name: str) -> Any | None:
    """The object stored as ``name`` under ``url`` (None if there is none); tensors and plain data only."""
    options = storage.resolve_storage_options(url)
    with storage.access(url, options):
        # few retries and short timeouts: a wrong endpoint fails in seconds, before any training
        fs, root = storage.filesystem(url, storage.probe_options(options))
        try:
            data = fs.cat_file(paths.join(root, name))
        except FileNotFoundError:
            return None
    check_archive(data, f"{url}/{name}")
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError for anything but tensors and plain data, or a damaged file
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise DatasetError(f"{url}/{name}: not a loadable checkpoint (only tensors and plain "
                           f"data are accepted; nothing in it was run): {reason}") from None


def check_archive(data: bytes, where: str) -> None:
    """Refuse a zip (torch.save's format) whose directory declares compressed records or more bytes than it
    holds, from the sizes in the directory alone (nothing is decompressed). Other files are left to torch.load,
    which refuses what is not plain data."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            records = archive.infolist()
    except (zipfile.BadZipFile, ValueError, OSError):
        return  # not a zip: torch's legacy format, or not a checkpoint (torch.load says which)
    declared = sum(record.file_size for record in records)
    compressed = [r.filename for r in records if r.compress_type != zipfile.ZIP_STORED]
    if compressed or declared > len(data) or len(records) > MAX_RECORDS:
        raise DatasetError(f"{where}: not a loadable checkpoint: its zip directory declares {len(records):,} "
                           f"record(s) of {declared:,} bytes in a file of {len(data):,}"
                           f"{', compressed (torch.save stores records as they are)' if compressed else ''}; "
                           "nothing in it was read")


def save_checkpoint(url: str, state: dict[str, Any], step: int) -> str:
    """Write ``step-<N>.pt`` and then ``latest.pt`` (one PUT each on S3; temp + rename locally)."""
    path = _write(url, f"step-{step:08d}.pt", state)
    _write(url, LATEST, state)
    return path


def load_checkpoint(url: str) -> dict[str, Any] | None:
    """The latest checkpoint under ``url`` (None if there is none)."""
    state = _read(url, LATEST)
    if state is not None and not isinstance(state, dict):
        raise DatasetError(f"{url}/{LATEST}: not a checkpoint (expected a dict, got {type(state).__name__})")
    return state


def save_model(url: str, name: str, weights: dict[str, torch.Tensor]) -> str:
    """A model file: the state_dict alone (weaver-core's ``--model-prefix ....pt`` loads it as it is)."""
    return _write(url, name, weights)


def load_weights(url: str) -> dict[str, torch.Tensor]:
    """Weights from a model file or a checkpoint (its model), local or on S3 (``--load-model-weights``)."""
    parent, _, name = url.rstrip("/").rpartition("/")
    state = _read(parent or ".", name)
    if state is None:
        raise DatasetError(f"{url}: no such model file")
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DatasetError(f"{url}: not a model file (a state_dict of tensors, or a jetstore checkpoint)")
    return state


def model_file(url: str) -> tuple[str, dict[str, torch.Tensor]] | None:
    """The weights a finished run predicts with: the best epoch's, else the last epoch's, else the latest
    checkpoint's; with the file's name (None if the run has none)."""
    for name in (BEST_MODEL, LAST_MODEL):
        weights = _read(url, name)
        if weights is not None:
            return name, weights
    state = load_checkpoint(url)
    return (LATEST, state["model"]) if state is not None else None
