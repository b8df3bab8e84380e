"""Dask ``distributed`` clients: an existing scheduler (``--scheduler``, else ``DASK_SCHEDULER_ADDRESS``),
else a LocalCluster on 127.0.0.1 with its dashboard on a free port."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator

import dask
from distributed import Client, LocalCluster

from jetstore.errors import StorageError

CONNECT_TIMEOUT = "10s"


def scheduler_address(scheduler: str | None = None) -> str | None:
    """The scheduler to use: the one given, else ``DASK_SCHEDULER_ADDRESS`` (or dask's configuration)."""
    return scheduler or os.environ.get("DASK_SCHEDULER_ADDRESS") or dask.config.get("scheduler-address", None)


@contextlib.contextmanager
def dask_client(scheduler: str | None = None, workers: int | None = None, quiet: bool = False) -> Iterator[Client]:
    """Connect to a scheduler or start a LocalCluster of ``workers`` single-threaded processes (listening on
    127.0.0.1 only). The scheduler and dashboard addresses are printed to stderr."""
    address = scheduler_address(scheduler)
    cluster = None
    if address:
        try:
            client = Client(address, timeout=CONNECT_TIMEOUT)
        except OSError as exc:
            raise StorageError(f"cannot reach the Dask scheduler at {address} ({exc}); is it running?") from None
    else:
        cluster = LocalCluster(
            n_workers=workers or os.cpu_count() or 1, threads_per_worker=1, processes=True, host="127.0.0.1",
            dashboard_address="127.0.0.1:0", silence_logs=logging.WARNING,
        )
        client = Client(cluster)
    try:
        if not quiet:
            where = f"scheduler {address}" if address else f"local cluster {client.scheduler.address}"
            print(f"dask {where}; dashboard: {client.dashboard_link}", file=sys.stderr)
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
