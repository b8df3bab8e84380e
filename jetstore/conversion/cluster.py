"""Dask ``distributed`` clients: an existing scheduler (``--scheduler``, else ``DASK_SCHEDULER_ADDRESS``),
else a private LocalCluster.

The LocalCluster listens on 127.0.0.1 only and speaks mutual TLS with credentials made for this run
(``Security.temporary()``: a fresh CA, certificate and key held in memory, handed to its own worker
processes and never written anywhere), so another process on the machine, another user's included,
cannot connect to its scheduler or workers and run code as the converting user (whose storage
credentials the workers hold). Its dashboard is on 127.0.0.1 too, on a free port: it shows task names
(never credentials) and accepts no work (no JSON identity, no HTTP API: ``PRIVATE_ROUTES``). distributed serves
its pages with bokeh, the ``dashboard`` extra: without bokeh there are none, and the printed line says so.

The workers of a LocalCluster leave the terminal to the client: Ctrl-C reaches the client alone (one line,
see ``cli/app.py``), and a heartbeat that fails or a task cancelled because the cluster is closing is not
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

from jetstore.errors import JetstoreError, StorageError

LOG = logging.getLogger(__name__)
CONNECT_TIMEOUT = "10s"
# scheduler HTTP routes the dashboard does not need, left out of a LocalCluster: the JSON identity (its host,
# workers and their metrics, to any local user; distributed fails to encode it once tasks ran, and tornado's
# traceback landed in the converting user's terminal) and the API (retire workers: no user's business)
PRIVATE_ROUTES = ("distributed.http.scheduler.json", "distributed.http.scheduler.api")
NO_DASHBOARD = "off (pip install 'jetstore[dashboard]' for one)"
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
        routes = [r for r in dask.config.get("distributed.scheduler.http.routes") if r not in PRIVATE_ROUTES]
        with dask.config.set({"distributed.scheduler.http.routes": routes}):
            cluster = LocalCluster(
                n_workers=workers or os.cpu_count() or 1, threads_per_worker=1, processes=True, host="127.0.0.1",
                protocol="tls", security=Security.temporary(), dashboard_address="127.0.0.1:0",
                silence_logs=logging.WARNING,
            )
        client = Client(cluster)
        verbose = logging.getLogger().isEnabledFor(logging.INFO)  # -v: every library's records
        client.register_plugin(QuietWorkers(verbose), name="jetstore-quiet-workers")
    failed = False
    try:
        if not quiet:
            where = f"scheduler {address}" if address else f"local cluster {client.scheduler.address}"
            dashboard = client.dashboard_link if address or _bokeh_installed() else NO_DASHBOARD
            LOG.info("dask %s; dashboard: %s", where, dashboard)
        yield client
    except BaseException:
        failed = True
        raise
    finally:
        with _quiet_teardown(failed):
            client.close()
            if cluster is not None:
                cluster.close()


@contextlib.contextmanager
def _quiet_teardown(failed: bool) -> Iterator[None]:
    """The teardown of a cluster after a failure or Ctrl-C (futures dropped mid-gather, a busy worker killed
    after 4 s) is not news: distributed's loggers say nothing while it runs (the failure is the one line)."""
    logger = logging.getLogger("distributed")
    level = logger.level
    if failed:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def _bokeh_installed() -> bool:
    """Whether the local cluster serves its dashboard pages (distributed needs bokeh for them: the ``dashboard``
    extra; without it the same port serves only the scheduler's health and metrics routes)."""
    try:
        import bokeh  # noqa: F401
    except ImportError:
        return False
    return True


class QuietWorkers(WorkerPlugin):
    """In each worker process of a LocalCluster: ignore Ctrl-C (the client stops the cluster), drop what a
    closing worker reports of its last heartbeat and its cancelled tasks, and (unless ``verbose``: -v) the
    "Compute Failed … Traceback" block of a task that raised one of jetstore's errors, which the client reports
    as its one line."""

    def __init__(self, verbose: bool = False):
        self.verbose = verbose

    def setup(self, worker) -> None:
        with contextlib.suppress(ValueError):  # not the main thread: nothing to change
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        for name in ("distributed.worker", "distributed.worker.state_machine"):
            logging.getLogger(name).addFilter(_WorkerNoise(worker, self.verbose))


class _WorkerNoise(logging.Filter):
    def __init__(self, worker, verbose: bool):
        super().__init__()
        self.worker, self.verbose = worker, verbose

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.verbose and _expected_failure(record):
            return False
        closing = str(getattr(self.worker, "status", "")).split(".")[-1] in ("closing", "closed",
                                                                              "closing_gracefully", "failed")
        return not (closing and record.getMessage().startswith(CLOSING_NOISE))


def _expected_failure(record: logging.LogRecord) -> bool:
    """A worker's "Compute Failed" record of a task that raised one of jetstore's errors (its type is the
    start of the exception text, ``DatasetError('…')``); other exceptions keep their traceback."""
    if not str(record.msg).startswith("Compute Failed") or not isinstance(record.args, tuple) \
            or len(record.args) < 4:
        return False
    return str(record.args[3]).partition("(")[0] in _error_names()


def _error_names() -> set[str]:
    names, pending = set(), [JetstoreError]
    while pending:
        kind = pending.pop()
        names.add(kind.__name__)
        pending += kind.__subclasses__()
    return names
