"""jetstore: ROOT jet libraries → sharded, checksummed Parquet / Zarr v3 training datasets.

The package folders follow the pipeline: ``schema`` → ``convert`` → ``store`` → ``stats`` → ``sampler``.
"""

from jetstore.errors import JetstoreError

__version__ = "0.1.0"
__all__ = ["JetDataset", "JetstoreError", "__version__"]


def __getattr__(name: str):
    if name == "JetDataset":  # imported lazily: torch is heavy and not needed to convert
        from jetstore.sampler import JetDataset

        return JetDataset
    raise AttributeError(name)
