"""jetstore: ROOT jet libraries → sharded, checksummed Parquet / Zarr v3 training datasets.

The package folders follow the pipeline: ``schema`` → ``conversion`` → ``store`` → ``stats`` → ``sampler``.
The public API::

    from jetstore import convert, load_schema, Dataset, Collection, open, compute_stats, JetDataset, SamplerOptions

Names are imported on first use, so ``import jetstore`` (and conversion) never loads torch or Dask's
``distributed``; type checkers see them through the ``TYPE_CHECKING`` imports below (the package ships
``py.typed``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from jetstore.errors import DatasetError, InputError, JetstoreError, SchemaError, StorageError
from jetstore.version import __version__

_PUBLIC = {
    "convert": "jetstore.conversion",
    "compute_stats": "jetstore.stats.run",
    "Dataset": "jetstore.store.dataset",
    "Collection": "jetstore.store.collection",
    "open": "jetstore.arrays",  # a dataset's jets as arrays, uproot's way
    "Jets": "jetstore.arrays",
    "JetDataset": "jetstore.sampler.dataset",  # needs torch: pip install jetstore[torch]
    "SamplerOptions": "jetstore.sampler.plan",
    "load_schema": "jetstore.schema",
}

__all__ = ["DatasetError", "InputError", "JetstoreError", "SchemaError", "StorageError", "__version__", *_PUBLIC]

if TYPE_CHECKING:  # what type checkers see instead of __getattr__: the names of _PUBLIC (``X as X``: re-exported)
    from jetstore.arrays import Jets as Jets
    from jetstore.arrays import open as open
    from jetstore.conversion import convert as convert
    from jetstore.sampler.dataset import JetDataset as JetDataset
    from jetstore.sampler.plan import SamplerOptions as SamplerOptions
    from jetstore.schema import load_schema as load_schema
    from jetstore.stats.run import compute_stats as compute_stats
    from jetstore.store.collection import Collection as Collection
    from jetstore.store.dataset import Dataset as Dataset
else:
    def __getattr__(name: str) -> Any:
        if name in _PUBLIC:
            return getattr(importlib.import_module(_PUBLIC[name]), name)
        raise AttributeError(f"module 'jetstore' has no attribute {name!r}")
