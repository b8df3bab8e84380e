"""Dask ``distributed`` clients: an existing scheduler (``--scheduler``, else ``DASK_SCHEDULER_ADDRESS``),
else a private LocalCluster.

The LocalCluster listens on 127.0.0.1 only and speaks mutual TLS with credentials made for this run
(``Security.temporary()``: a fresh CA, certificate and key held in memory, handed to its own worker
processes and never written anywhere), so another process on the machine, another user's included,
cannot connect to its scheduler or workers and run code as the converting user (whose storage
credentials the workers hold). Its dashboard is on 127.0.0.1 too, on a free port: it shows task names
(never credentials) and accepts no work.

The workers of a LocalCluster leave the terminal to the client: Ctrl-C reaches the client alone (one line,
see ``cli.py``), and a heartbeat that fails or a task cancelled because the cluster is closing is not
reported (the 30-line "Failed to communicate with scheduler during heartbeat" traceback at shutdown).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from collections.abc import Iterator

import dask
from distributed import Client, LocalCluster, WorkerPlugin
from distributed.security import Security

from jetstore.errors import StorageError

LOG = logging.getLogger(__name__)
CONNECT_TIMEOUT = "10s"
CLOSING_NOISE = ("Failed to communicate with scheduler during heartbeat", "Async instruction for")  # while closing


def scheduler_address(scheduler: str | None = None) -> str | None:
    """The scheduler to use: the one given, else ``DASK_SCHEDULER_ADDRESS`` (or dask's configuration)."""
    return scheduler or os.environ.get("DASK_SCHEDULER_ADDRESS") or dask.config.get("scheduler-address", None)


@contextlib.contextmanager
def dask_client(scheduler: str | None = None, workers: int | None = None, quiet: bool = False) -> Iterator[Client]:
    """Connect to a scheduler or start a private LocalCluster of ``workers`` single-threaded processes
    (127.0.0.1, TLS with credentials of this run). The scheduler and dashboard addresses are printed to
    stderr."""
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
            protocol="tls", security=Security.temporary(), dashboard_address="127.0.0.1:0",
            silence_logs=logging.WARNING,
        )
        client = Client(cluster)
        client.register_plugin(QuietWorkers(), name="jetstore-quiet-workers")
    try:
        if not quiet:
            where = f"scheduler {address}" if address else f"local cluster {client.scheduler.address}"
            LOG.info("dask %s; dashboard: %s", where, client.dashboard_link)
        yield client
    except KeyboardInterrupt:  # the interrupted run's teardown (futures dropped mid-gather) is not news
        logging.getLogger("distributed").setLevel(logging.CRITICAL)
        raise
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


class QuietWorkers(WorkerPlugin):
    """In each worker process of a LocalCluster: ignore Ctrl-C (the client stops the cluster) and drop what a
    closing worker reports of its last heartbeat and its cancelled tasks."""

    def setup(self, worker) -> None:
        with contextlib.suppress(ValueError):  # not the main thread: nothing to change
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        for name in ("distributed.worker", "distributed.worker.state_machine"):
            logging.getLogger(name).addFilter(_ClosingNoise(worker))


class _ClosingNoise(logging.Filter):
    def __init__(self, worker):
        super().__init__()
        self.worker = worker

    def filter(self, record: logging.LogRecord) -> bool:
        closing = str(getattr(self.worker, "status", "")).split(".")[-1] in ("closing", "closed",
                                                                              "closing_gracefully", "failed")
        return not (closing and record.getMessage().startswith(CLOSING_NOISE))
