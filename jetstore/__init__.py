"""jetstore: ROOT jet libraries → sharded, checksummed Parquet / Zarr v3 training datasets.

The package folders follow the pipeline: ``schema`` → ``convert`` → ``store``.
"""

from jetstore.errors import JetstoreError

__version__ = "0.1.0"
__all__ = ["JetstoreError", "__version__"]
