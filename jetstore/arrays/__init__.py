"""Reading converted datasets as arrays, uproot's way: ``jetstore.open(data).arrays(...)``, ``.iterate(...)``,
``.dask(...)`` (see :mod:`jetstore.arrays.jets`)."""

from jetstore.arrays.jets import Jets, open

__all__ = ["Jets", "open"]
