"""Reading units ahead of need, in one process: exact-range fetches on I/O threads (a bounded number of
units in flight, sized by bytes), decoding and preparation on ``threads`` CPU threads (the decoders and
numba kernels release the GIL), results in reading order.

With 30 ms per request on object storage, the fetches of the next units overlap the work on the current
ones, so latency costs little throughput; memory stays bounded by the units in flight, whatever the
dataset or shard size.
"""

from __future__ import annotations

import collections
import concurrent.futures
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

from jetstore.sampler.schemes import UnitRead
from jetstore.sampler.units import UnitTable
from jetstore.store.collection import ShardCatalog
from jetstore.store.format import ShardReader
from jetstore.store.layout import Selection
from jetstore.store.table import JetTable

Work = Callable[[int, UnitRead, JetTable], Any]


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
        self.reads, self.items = reads, []

    def get(self, index: int) -> UnitRead | None:
        while len(self.items) <= index:
            item = next(self.reads, None)
            if item is None:
                return None
            self.items.append(item)
        return self.items[index]


class UnitPipeline:
    """Reads units (the columns ``selections[dataset]``) and applies ``work(sequence, read, table)`` to each, ahead
    of need."""

    def __init__(self, catalog: ShardCatalog, units: UnitTable, selections: tuple[Selection, ...], work: Work,
                 executors: Executors, ahead: int):
        self.catalog, self.units, self.selections = catalog, units, selections
        self.work, self.executors, self.ahead = work, executors, max(1, ahead)
        self.readers: dict[int, ShardReader] = {}
        self.lock = threading.Lock()

    def run(self, items: Iterator[tuple[int, UnitRead]],
            wanted: Callable[[float], bool] = lambda _: True) -> Iterator[Any]:
        """``work``'s results for ``items`` (sequence number, read), in order. Units are read up to ``ahead``
        in advance while ``wanted(rows expected from the units in flight)`` says more will be needed; the
        next unit is always read when asked for."""
        pending: collections.deque[tuple[concurrent.futures.Future, float]] = collections.deque()
        exhausted = False

        def submit() -> bool:
            nonlocal exhausted
            item = None if exhausted else next(items, None)
            if item is None:
                exhausted = True
                return False
            pending.append((self._submit(*item), item[1].expected))
            return True

        def fill() -> None:
            while len(pending) < self.ahead and wanted(sum(rows for _, rows in pending)) and submit():
                pass

        try:
            while True:
                fill()
                if not pending and not submit():
                    return
                future, _ = pending.popleft()
                fill()
                yield future.result()
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

    def _fetch(self, read: UnitRead):
        units = self.units
        shard = int(units.shard[read.unit])
        reader = self._reader(shard)
        selection = self.selections[int(self.catalog.member[shard])]
        plan = reader.plan(int(units.start[read.unit]), int(units.stop[read.unit]), selection)
        return reader, plan, reader.fetch(plan)

    def _submit(self, sequence: int, read: UnitRead) -> concurrent.futures.Future:
        result: concurrent.futures.Future = concurrent.futures.Future()

        def process(reader, plan, pieces):
            return self.work(sequence, read, reader.decode(plan, pieces))

        def fetched(io: concurrent.futures.Future) -> None:
            if io.cancelled() or io.exception() is not None or result.cancelled():
                _forward(io, result)
                return
            try:
                cpu = self.executors.cpu.submit(process, *io.result())
            except RuntimeError:  # the stream was closed meanwhile
                result.cancel()
                return
            cpu.add_done_callback(lambda done: _forward(done, result))

        self.executors.io.submit(self._fetch, read).add_done_callback(fetched)
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
