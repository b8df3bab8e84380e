"""Conversion: jet libraries (ROOT, Parquet, HDF5 files) → sharded datasets, as Dask tasks over (file, entry
range). ``distributed`` is imported on first use, so the command line builds its options without it."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jetstore.conversion.request import ConvertRequest
from jetstore.schema import Schema, load_schema
from jetstore.store import storage
from jetstore.store.layout import Layout

if TYPE_CHECKING:
    from distributed import Client

    from jetstore.conversion.cluster import dask_client
    from jetstore.conversion.run import ConvertReport, session

_LAZY = {"ConvertReport": "jetstore.conversion.run", "session": "jetstore.conversion.run",
         "dask_client": "jetstore.conversion.cluster"}


def convert(inputs: str | Iterable[str], schema: Schema | str | Path, output: str, *,
            format: str = ConvertRequest.format, jets_per_shard: int = ConvertRequest.jets_per_shard,
            layout: Layout | None = None, read_step: int = ConvertRequest.read_step,
            storage_options: Mapping[str, Any] | None = None, input_storage_options: Mapping[str, Any] | None = None,
            overwrite: bool = False, append: bool = False, skip_bad_inputs: bool = False, break_lease: bool = False,
            client: Client | None = None, scheduler: str | None = None, workers: int | None = None,
            progress: bool = True, quiet: bool | None = None, log: Callable[[str], None] | None = None,
            ) -> ConvertReport:
    """Convert jet libraries (ROOT, Parquet or HDF5 files: paths, globs or URLs) into a dataset at ``output``
    with ``schema`` (a Schema, a YAML path or a bundled name), on ``client``, else on the scheduler given (or
    ``DASK_SCHEDULER_ADDRESS``), else on a LocalCluster of ``workers`` processes (its address is printed
    unless ``quiet``, by default when there is no ``progress`` bar). Rerunning resumes; ``append`` adds the
    inputs to the existing dataset at ``output``."""
    from jetstore.conversion.cluster import dask_client
    from jetstore.conversion.run import session

    inputs = (inputs,) if isinstance(inputs, str) else tuple(inputs)
    request = ConvertRequest(
        inputs=inputs, schema=schema if isinstance(schema, Schema) else load_schema(schema), output=output,
        format=format, jets_per_shard=jets_per_shard, layout=layout or Layout(), read_step=read_step,
        overwrite=overwrite, append=append, skip_bad_inputs=skip_bad_inputs, break_lease=break_lease,
        input_options=storage.resolve_storage_options(inputs[0] if inputs else "", input_storage_options),
        output_options=storage.resolve_storage_options(output, storage_options),
    )
    with session(request, log) as ready:
        if client is not None:
            return ready.run(client, progress)
        with dask_client(scheduler, workers, quiet=not progress if quiet is None else quiet) as own:
            return ready.run(own, progress)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'jetstore.conversion' has no attribute {name!r}")


__all__ = ["ConvertReport", "ConvertRequest", "convert", "dask_client", "session"]
