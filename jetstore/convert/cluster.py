"""Dask ``distributed`` clients: a LocalCluster by default, or an existing scheduler."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator

from distributed import Client, LocalCluster


@contextlib.contextmanager
def dask_client(scheduler: str | None = None, workers: int | None = None, quiet: bool = False) -> Iterator[Client]:
    """Connect to ``scheduler`` or start a LocalCluster of ``workers`` single-threaded processes.

    The dashboard link is printed to stderr so conversions can be watched live.
    """
    if scheduler:
        client = Client(scheduler)
        cluster = None
    else:
        cluster = LocalCluster(
            n_workers=workers or os.cpu_count() or 1, threads_per_worker=1, processes=True,
            silence_logs=logging.WARNING, dashboard_address=":8787",
        )
        client = Client(cluster)
    try:
        if not quiet:
            print(f"dask dashboard: {client.dashboard_link}", file=sys.stderr)
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
