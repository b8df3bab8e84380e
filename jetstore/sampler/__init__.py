"""The streaming sampler: a torch IterableDataset of ready, weighted, shuffled batches."""

from jetstore.sampler.dataset import JetDataset
from jetstore.sampler.plan import SamplerOptions
from jetstore.sampler.world import World

__all__ = ["JetDataset", "SamplerOptions", "World"]
