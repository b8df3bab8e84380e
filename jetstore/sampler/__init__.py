"""The streaming sampler: a torch IterableDataset of ready, weighted, shuffled batches.

``JetDataset`` needs torch; the rest of the sampler (plans, options, kernels) does not, so names are imported
on first use."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_PUBLIC = {"JetDataset": "jetstore.sampler.dataset", "SamplerOptions": "jetstore.sampler.sampler_plan",
           "World": "jetstore.sampler.world"}
__all__ = list(_PUBLIC)

if TYPE_CHECKING:
    from jetstore.sampler.dataset import JetDataset as JetDataset
    from jetstore.sampler.sampler_plan import SamplerOptions as SamplerOptions
    from jetstore.sampler.world import World as World
else:
    def __getattr__(name: str) -> Any:
        if name in _PUBLIC:
            return getattr(importlib.import_module(_PUBLIC[name]), name)
        raise AttributeError(f"module 'jetstore.sampler' has no attribute {name!r}")
