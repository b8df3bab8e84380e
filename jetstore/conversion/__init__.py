"""Conversion: jet libraries (ROOT, Parquet, HDF5 files) → sharded datasets, as Dask tasks over (file, entry
range). ``distributed`` is imported on first use, so the command line builds its options without it."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jetstore.conversion.request import ConvertRequest
from jetstore.io import settings
from jetstore.model.layout import Layout
from jetstore.schema import Schema, load_schema

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
    """Convert jet libraries into a sharded, checksummed dataset at ``output``.

    Rerunning the same call resumes: shards already committed and intact are reused, the rest are redone. An
    input that fails to convert is not raised but listed in the report; every error raised is a
    :class:`~jetstore.errors.JetstoreError` with a one-line message.

    Parameters
    ----------
    inputs
        ROOT, Parquet or HDF5 files (told apart by their content): paths, globs or fsspec URLs (``s3://``,
        ``root://``).
    schema
        What the inputs hold and how it is stored: a :class:`~jetstore.schema.Schema`, a YAML path or the name
        of a bundled schema (``cms_ak4``, ``jetclass``, ``nano_ak4``...).
    output
        The dataset: a local path or an ``s3://bucket/prefix`` URL.
    format
        ``zarr`` or ``parquet`` (:mod:`jetstore.formats`).
    jets_per_shard
        Input entries per shard; small inputs are packed together into shards of about this size.
    layout
        Jets per unit (Zarr chunk / Parquet row group), node values per Zarr chunk and the codec
        (default: :class:`~jetstore.model.layout.Layout`).
    read_step
        Input entries read at once by a task.
    storage_options
        fsspec options (endpoint, credentials) for the output; default: the ``AWS_*`` environment variables.
    input_storage_options
        fsspec options for remote inputs; default: the ``AWS_*`` environment variables.
    overwrite
        Delete an existing dataset at ``output`` first.
    append
        Add the inputs to the existing dataset at ``output`` (same schema, format and layout); inputs it
        already holds are skipped.
    skip_bad_inputs
        Commit the dataset without the inputs that failed (the report still lists them).
    break_lease
        Take over the write lease of a conversion that crashed.
    client
        The Dask ``distributed`` client to run on; default: one for ``scheduler``, else for a LocalCluster.
    scheduler
        The address of a running Dask scheduler (default: ``DASK_SCHEDULER_ADDRESS``; neither: a LocalCluster).
    workers
        The LocalCluster's worker processes (default: one per core).
    progress
        Show a progress bar.
    quiet
        Do not print the cluster's address and dashboard link (default: when there is no progress bar).
    log
        Where notices go (default: the ``jetstore.conversion.run`` logger, at INFO).

    Returns
    -------
    ConvertReport
        The committed manifest (``None`` when bad inputs left the dataset uncommitted), the failed inputs
        with their reasons, and how many shards were written and reused; ``report.ok`` when nothing failed.

    Raises
    ------
    SchemaError
        The schema is invalid (the message names the key), or its ``source`` is no known input kind.
    InputError
        No input was found (every pattern matched nothing or named a missing file).
    DatasetError
        A different dataset exists at ``output`` (give ``overwrite`` or ``append``), the dataset to append to is
        missing or incompatible, or another conversion holds its write lease (:class:`~jetstore.errors.LeaseError`).
    StorageError
        The output (or the Dask scheduler) cannot be reached, credentials are missing or wrong, or shards could
        not be written.
    JetstoreError
        An unknown ``format``, or both ``overwrite`` and ``append``.
    """
    from jetstore.conversion.cluster import dask_client
    from jetstore.conversion.run import session

    inputs = (inputs,) if isinstance(inputs, str) else tuple(inputs)
    request = ConvertRequest(
        inputs=inputs, schema=schema if isinstance(schema, Schema) else load_schema(schema), output=output,
        format=format, jets_per_shard=jets_per_shard, layout=layout or Layout(), read_step=read_step,
        overwrite=overwrite, append=append, skip_bad_inputs=skip_bad_inputs, break_lease=break_lease,
        input_options=settings.resolve_storage_options(inputs[0] if inputs else "", input_storage_options),
        output_options=settings.resolve_storage_options(output, storage_options),
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
