"""jetstore: ROOT jet libraries → sharded, checksummed Parquet / Zarr v3 training datasets.

The package folders follow the pipeline: ``schema`` → ``conversion`` → ``store`` → ``stats`` → ``sampler``.
The public API::

    from jetstore import convert, load_schema, Dataset, compute_stats, JetDataset

Names are imported on first use, so ``import jetstore`` (and conversion) never loads torch.
"""

from __future__ import annotations

import importlib

from jetstore.errors import DatasetError, InputError, JetstoreError, SchemaError, StorageError
from jetstore.version import __version__

_PUBLIC = {
    "convert": "jetstore.conversion",
    "compute_stats": "jetstore.stats.run",
    "Dataset": "jetstore.store.dataset",
    "JetDataset": "jetstore.sampler",  # needs torch: pip install jetstore[torch]
    "load_schema": "jetstore.schema",
}

__all__ = ["DatasetError", "InputError", "JetstoreError", "SchemaError", "StorageError", "__version__", *_PUBLIC]


def __getattr__(name: str):
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'jetstore' has no attribute {name!r}")
