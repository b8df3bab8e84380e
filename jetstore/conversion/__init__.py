"""Conversion: ROOT jet libraries → sharded datasets, as Dask tasks over (file, entry range)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from distributed import Client

from jetstore.conversion.cluster import dask_client
from jetstore.conversion.request import ConvertRequest
from jetstore.conversion.run import ConvertReport, session
from jetstore.schema import Schema, load_schema
from jetstore.store import storage
from jetstore.store.layout import Layout


def convert(inputs: str | Iterable[str], schema: Schema | str | Path, output: str, *, format: str = "zarr",
            jets_per_shard: int = 100_000, layout: Layout | None = None, read_step: int = 20_000,
            storage_options: Mapping[str, Any] | None = None, input_storage_options: Mapping[str, Any] | None = None,
            overwrite: bool = False, skip_bad_inputs: bool = False, break_lease: bool = False,
            client: Client | None = None, scheduler: str | None = None, workers: int | None = None,
            progress: bool = True, log: Callable[[str], None] | None = None) -> ConvertReport:
    """Convert ROOT files (paths, globs or URLs) into a dataset at ``output`` with ``schema`` (a Schema, a
    YAML path or a bundled name), on ``client``, else on the scheduler given (or ``DASK_SCHEDULER_ADDRESS``),
    else on a LocalCluster of ``workers`` processes. Rerunning resumes."""
    inputs = (inputs,) if isinstance(inputs, str) else tuple(inputs)
    request = ConvertRequest(
        inputs=inputs, schema=schema if isinstance(schema, Schema) else load_schema(schema), output=output,
        format=format, jets_per_shard=jets_per_shard, layout=layout or Layout(), read_step=read_step,
        overwrite=overwrite, skip_bad_inputs=skip_bad_inputs, break_lease=break_lease,
        input_options=storage.resolve_storage_options(inputs[0] if inputs else "", input_storage_options),
        output_options=storage.resolve_storage_options(output, storage_options),
    )
    with session(request, log) as ready:
        if client is not None:
            return ready.run(client, progress)
        with dask_client(scheduler, workers, quiet=not progress) as own:
            return ready.run(own, progress)


__all__ = ["ConvertReport", "ConvertRequest", "convert", "dask_client", "session"]
