"""Conversion: ROOT jet libraries → sharded datasets, as Dask tasks over (file, entry range)."""
