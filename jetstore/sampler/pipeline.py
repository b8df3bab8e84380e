"""Reading units ahead of need, in one process, a window of units at a time: exact-range fetches on I/O threads
(one call per shard of a window; a bounded number of units in flight, sized by bytes), decoding and preparation
on ``threads`` CPU threads (one task per window: the decoders and numba kernels release the GIL, and Python's
steps are per window, not per unit), results per unit in reading order.

With 30 ms per request on object storage, the fetches of the next units overlap the work on the current
ones, so latency costs little throughput; memory stays bounded by the units in flight, whatever the
dataset or shard size.
"""

from __future__ import annotations

import collections
import concurrent.futures
import functools
import os
import threading
from collections.abc import Callable, Generator, Iterator
from typing import Any, ClassVar

import numpy as np

from jetstore.dataset.collection import ShardCatalog
from jetstore.formats import ReadPlan, ShardReader
from jetstore.model.layout import Selection
from jetstore.model.table import JetTable
from jetstore.sampler.schemes import UnitRead
from jetstore.sampler.units import UnitTable

Work = Callable[[list[tuple[int, UnitRead]], JetTable], list[Any]]
WINDOW_UNITS = 32  # the most units read, decoded and prepared as one


class Executors:
    """The I/O and CPU thread pools of a process, made once (per process: DataLoader workers make their
    own) and reused by every epoch's stream."""

    _shared: ClassVar[dict[tuple[int, int, int], Executors]] = {}
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, threads: int, io_threads: int):
        self.threads = max(1, threads)
        self.io = concurrent.futures.ThreadPoolExecutor(max(1, io_threads), thread_name_prefix="jetstore-io")
        self.cpu = concurrent.futures.ThreadPoolExecutor(self.threads, thread_name_prefix="jetstore-cpu")

    @classmethod
    def shared(cls, threads: int, io_threads: int) -> Executors:
        key = (os.getpid(), threads, io_threads)
        with cls._lock:
            if key not in cls._shared:
                cls._shared[key] = cls(threads, io_threads)
            return cls._shared[key]


class ReadSequence:
    """A slot's unit reads, generated lazily and kept, so several passes can start at any position."""

    def __init__(self, reads: Iterator[UnitRead]):
        self.reads = reads
        self.items: list[UnitRead] = []

    def get(self, index: int) -> UnitRead | None:
        while len(self.items) <= index:
            item = next(self.reads, None)
            if item is None:
                return None
            self.items.append(item)
        return self.items[index]


class UnitPipeline:
    """Reads units (the columns ``selections[dataset]``) a window at a time, ahead of need, and applies
    ``work(items, table)`` to each window's units of one dataset: ``table`` holds their jets, unit after unit,
    decoded by one call of the format (:meth:`ShardReader.decode_window`), and ``work`` returns one result per
    unit. Python handles a window (up to ``WINDOW_UNITS`` units) per step, not a unit."""

    def __init__(self, catalog: ShardCatalog, units: UnitTable, selections: tuple[Selection, ...], work: Work,
                 executors: Executors, ahead: int):
        self.catalog, self.units, self.selections = catalog, units, selections
        self.work, self.executors, self.ahead = work, executors, max(1, ahead)
        self.window = max(1, min(WINDOW_UNITS, self.ahead // (2 * executors.threads)))  # windows for every thread
        self.readers: dict[int, ShardReader] = {}
        self.lock = threading.Lock()

    def run(self, items: Iterator[tuple[int, UnitRead]],
            wanted: Callable[[float], bool] = lambda _: True) -> Generator[Any, None, None]:
        """``work``'s results for ``items`` (sequence number, read), in order. Windows are read up to ``ahead``
        units in advance while ``wanted(rows expected from the units in flight)`` says more will be needed; the
        next unit is always read when asked for."""
        pending: collections.deque[tuple[concurrent.futures.Future, list[tuple[int, UnitRead]]]] = collections.deque()
        flight = {"units": 0, "rows": 0.0}  # submitted, not yet yielded
        exhausted = False

        def submit(force: bool) -> bool:
            """Submit a window: at least one unit when ``force``, else as many as are wanted once a whole window
            fits (refilling unit by unit as units are consumed would make windows of one unit)."""
            nonlocal exhausted
            window: list[tuple[int, UnitRead]] = []
            if not force and flight["units"] + self.window > self.ahead:
                return False
            while not exhausted and len(window) < self.window and (
                    (force and not window) or (flight["units"] < self.ahead and wanted(flight["rows"]))):
                item = next(items, None)
                if item is None:
                    exhausted = True
                    break
                window.append(item)
                flight["units"] += 1
                flight["rows"] += item[1].expected
            if window:
                pending.append((self._submit(window), window))
            return bool(window)

        def fill() -> None:
            while submit(False):
                pass

        try:
            while True:
                fill()
                if not pending and not submit(True):
                    return
                future, window = pending.popleft()
                for result, (_, read) in zip(future.result(), window, strict=True):
                    flight["units"] -= 1
                    flight["rows"] -= read.expected
                    fill()
                    yield result
        finally:
            for future, _ in pending:
                future.cancel()

    @property
    def bytes_fetched(self) -> int:
        with self.lock:
            return sum(reader.bytes_fetched for reader in self.readers.values())

    def _reader(self, shard: int) -> ShardReader:
        with self.lock:
            reader = self.readers.get(shard)
        if reader is None:
            reader = self.catalog.reader(shard)  # may read the shard's tail (I/O thread)
            with self.lock:
                reader = self.readers.setdefault(shard, reader)
        return reader

    def _fetch(self, shard: int, reads: list[UnitRead]) -> tuple[ShardReader, list[ReadPlan], list[list[bytes]]]:
        """I/O thread: the plans of a window's units in one shard, and their bytes, fetched in one call."""
        units, reader = self.units, self._reader(shard)
        selection = self.selections[int(self.catalog.member[shard])]
        index = [read.unit for read in reads]
        plans = reader.plan_units(list(zip(units.start[index].tolist(), units.stop[index].tolist(), strict=True)),
                                  selection)
        return reader, plans, reader.fetch_many(plans)

    def _process(self, window: list[tuple[int, UnitRead]],
                 fetched: dict[int, tuple[ShardReader, list[ReadPlan], list[list[bytes]]]]) -> list[Any]:
        """CPU thread: each dataset's units of the window (by shard and place) decoded as one table, and worked."""
        shards = self.units.shard[[read.unit for _, read in window]]
        taken = dict.fromkeys(fetched, 0)
        parts = []
        for shard in shards.tolist():  # the window's plans and pieces, in window order
            reader, plans, pieces = fetched[shard]
            parts.append((reader, plans[taken[shard]], pieces[taken[shard]]))
            taken[shard] += 1
        members = self.catalog.member[shards]
        results: list[Any] = [None] * len(window)
        for member in np.unique(members).tolist():
            mine = np.nonzero(members == member)[0]
            mine = mine[np.lexsort((self.units.start[[window[i][1].unit for i in mine]], shards[mine]))]
            reads = [parts[i] for i in mine.tolist()]
            table = type(reads[0][0]).decode_window(reads)
            for i, result in zip(mine.tolist(), self.work([window[i] for i in mine.tolist()], table), strict=True):
                results[i] = result
        return results

    def _submit(self, window: list[tuple[int, UnitRead]]) -> concurrent.futures.Future:
        """A future of the window's results: one fetch per shard on the I/O threads, then one CPU task."""
        result: concurrent.futures.Future = concurrent.futures.Future()
        by_shard: dict[int, list[UnitRead]] = {}
        for _, read in window:
            by_shard.setdefault(int(self.units.shard[read.unit]), []).append(read)
        fetched: dict[int, Any] = {}
        lock = threading.Lock()

        def arrived(shard: int, io: concurrent.futures.Future) -> None:
            if io.cancelled() or io.exception() is not None or result.cancelled():
                _forward(io, result)
                return
            with lock:
                fetched[shard] = io.result()
                complete = len(fetched) == len(by_shard)
            if not complete:
                return
            try:
                cpu = self.executors.cpu.submit(self._process, window, fetched)
            except RuntimeError:  # the stream was closed meanwhile
                result.cancel()
                return
            cpu.add_done_callback(lambda done: _forward(done, result))

        for shard, reads in by_shard.items():
            self.executors.io.submit(self._fetch, shard, reads).add_done_callback(
                functools.partial(arrived, shard))
        return result


def _forward(done: concurrent.futures.Future, result: concurrent.futures.Future) -> None:
    """Settle ``result`` like ``done`` (unless the consumer gave it up already)."""
    try:
        if done.cancelled():
            result.cancel()
        elif done.exception() is not None:
            result.set_exception(done.exception())
        else:
            result.set_result(done.result())
    except concurrent.futures.InvalidStateError:
        pass
