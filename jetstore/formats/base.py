"""Interfaces of a storage format: a shard writer (to a local staging path) and a shard reader (exact
byte-range reads from any fsspec filesystem, planned and decoded separately so I/O can run ahead).

A reader's :meth:`ShardReader.plan` names the byte ranges that hold jets ``[start, stop)`` of the selected
columns; :meth:`ShardReader.decode` turns the fetched bytes into a :class:`JetTable`. Every failure is a
:class:`DatasetError` naming the shard. The per-shard metadata (zip directory, Parquet footer) is read
once per process and cached.
"""

from __future__ import annotations

import collections
import concurrent.futures
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from jetstore.errors import DatasetError
from jetstore.io.ranges import ByteSource, Range, SparseFile
from jetstore.model.layout import Layout, Selection, TableColumns
from jetstore.model.table import JetTable

TAIL_BYTES = 64 << 10  # first read of a shard: its last 64 KiB (zip directory + metadata / Parquet footer)
MIN_GAP = 64 << 10  # ranges closer than this are fetched as one
MAX_METADATA_BYTES = 64 << 20  # the most a shard's metadata (zip directory + zarr.json / Parquet footer) may take
MAX_MESSAGE = 240  # characters of a damage description
MAX_CHUNK_BYTES = 256 << 20  # the most one decoded chunk or column chunk may take
MAX_EXPANSION = 256  # a read may decode to this many times its stored bytes (jet data compress 2-10×) ...
MIN_DECODED_LIMIT = 64 << 20  # ... or to this much, whatever its stored size


@dataclass(frozen=True)
class ShardBounds:
    """What the manifest says of one shard: every size in the shard's own metadata must agree with it (or
    fit in the shard's bytes) before anything is allocated or decompressed. ``None``: not known."""

    n_jets: int
    node_counts: Mapping[str, int] | None = None
    unit_jets: int | None = None
    chunk_values: int | None = None


class ShardWriter(ABC):
    """Writes one shard to a local path, fed :class:`JetTable` pieces of any size."""

    def __init__(self, path: Path, columns: TableColumns, layout: Layout):
        self.path, self.columns, self.layout = path, columns, layout

    @abstractmethod
    def write(self, table: JetTable) -> None: ...

    @abstractmethod
    def close(self) -> None: ...


@dataclass(frozen=True)
class ReadPlan:
    """Byte ranges to fetch for jets ``[start, stop)`` of ``selection``, and how to decode them."""

    start: int
    stop: int
    selection: Selection
    fetch: tuple[Range, ...]  # the byte ranges to fetch (nearby pieces merged)
    parts: Any  # format-specific: what each fetched range holds

    @property
    def bytes(self) -> int:
        return sum(b - a for a, b in self.fetch)


class ShardReader(ABC):
    """Reads jets of one shard: ``read`` = ``decode(plan, source.fetch(plan.fetch))``."""

    def __init__(self, source: ByteSource, columns: TableColumns, n_jets: int, name: str,
                 bounds: ShardBounds | None = None):
        self.source, self.columns, self.n_jets, self.name = source, columns, n_jets, name
        self.bounds = bounds or ShardBounds(n_jets)

    def metadata_file(self) -> SparseFile:
        """The shard as a file object for parsing its metadata: its tail, and further reads up to
        ``MAX_METADATA_BYTES`` in all (a directory or footer claiming more is damage)."""
        source = self.source
        start, tail = source.tail(TAIL_BYTES)
        budget = {"left": MAX_METADATA_BYTES - len(tail)}

        def fetch(a: int, b: int) -> bytes:
            budget["left"] -= max(0, b - a)
            if budget["left"] < 0:
                raise self.damaged(f"its metadata claims more than {MAX_METADATA_BYTES >> 20} MiB")
            return source.fetch([(a, b)])[0]

        return SparseFile(source.size, {start: tail}, fetch)

    @abstractmethod
    def plan(self, start: int, stop: int, selection: Selection) -> ReadPlan:
        """The ranges holding jets ``[start, stop)`` of ``selection``."""

    @abstractmethod
    def decode(self, plan: ReadPlan, pieces: list[bytes]) -> JetTable:
        """The jets of ``plan`` from the fetched ``pieces`` (one per range of ``plan.fetch``)."""

    def read(self, selection: Selection, start: int = 0, stop: int | None = None) -> JetTable:
        stop = self.n_jets if stop is None else min(stop, self.n_jets)
        plan = self.plan(start, max(start, stop), selection)
        return self.decode(plan, self.fetch(plan))

    def fetch(self, plan: ReadPlan) -> list[bytes]:
        return self.guard(lambda: self.source.fetch(plan.fetch))

    def plan_units(self, bounds: Sequence[tuple[int, int]], selection: Selection) -> list[ReadPlan]:
        """The plans of several reads ``[start, stop)`` of this shard (formats may make them together)."""
        return [self.plan(start, stop, selection) for start, stop in bounds]

    def fetch_many(self, plans: Sequence[ReadPlan]) -> list[list[bytes]]:
        """The pieces of several plans of this shard, fetched in one call (concurrent requests on object stores)."""
        pieces = self.guard(lambda: self.source.fetch([r for plan in plans for r in plan.fetch]))
        ends = np.cumsum([len(plan.fetch) for plan in plans]).tolist()
        return [pieces[a:b] for a, b in zip([0, *ends[:-1]], ends, strict=True)]

    @classmethod
    def decode_window(cls, reads: Sequence[tuple[ShardReader, ReadPlan, list[bytes]]]) -> JetTable:
        """The jets of several plans (of one dataset and selection, in any of its shards) as one table, plan after
        plan: formats decode them with as few calls as they can; this default decodes each and concatenates."""
        return JetTable.concat([reader.decode(plan, pieces) for reader, plan, pieces in reads])

    def guard(self, action: Callable[[], Any]) -> Any:
        """Run ``action``; a missing object or a storage failure becomes an error naming this shard."""
        try:
            return action()
        except DatasetError:
            raise
        except FileNotFoundError:
            raise DatasetError(f"{self.name} is listed in the manifest but missing") from None
        except OSError as exc:
            raise DatasetError(f"{self.name}: cannot be read ({type(exc).__name__}: {exc})") from None

    def check_expansion(self, plan_start: int, plan_stop: int, decoded: int, stored: int) -> None:
        """Refuse, before anything is allocated, a read of jets ``[plan_start, plan_stop)`` that would decode
        ``stored`` bytes to more than ``MAX_EXPANSION`` times as many (a few zero-filled megabytes claiming
        gigabytes of consistent counts: no jet library compresses so)."""
        if decoded > max(MIN_DECODED_LIMIT, MAX_EXPANSION * stored):
            raise DatasetError(f"{self.name}: refused: jets {plan_start}-{plan_stop} would decode to "
                               f"{decoded >> 20:,} MiB from {stored >> 10:,} KiB stored (more than {MAX_EXPANSION}× "
                               "expansion; not data a jetstore writer produces)")

    def damaged(self, what: str) -> DatasetError:
        what = " ".join(what.split())  # one line, also for a library's multi-line message
        if len(what) > MAX_MESSAGE:
            what = what[:MAX_MESSAGE] + "…"
        return DatasetError(f"{self.name} is damaged ({what}); a `jetstore convert` rerun redoes it")

    @property
    def bytes_fetched(self) -> int:
        return self.source.bytes_fetched


class MetadataCache:
    """Per-process LRU of parsed shard metadata, keyed by (path, checksum). Threads asking for the same shard at
    once wait for one load (the I/O threads start on a new shard together: one tail read, not one each)."""

    def __init__(self, capacity: int = 256):
        self.capacity = capacity
        self.items: collections.OrderedDict[tuple[str, str], Any] = collections.OrderedDict()
        self.loading: dict[tuple[str, str], concurrent.futures.Future] = {}
        self.lock = threading.Lock()

    def get(self, key: tuple[str, str], load: Callable[[], Any]) -> Any:
        with self.lock:
            if key in self.items:
                self.items.move_to_end(key)
                return self.items[key]
            pending = self.loading.get(key)
            owner = pending is None
            if pending is None:
                pending = self.loading[key] = concurrent.futures.Future()
        if not owner:
            return pending.result()
        try:
            value = load()
        except BaseException as exc:
            with self.lock:
                del self.loading[key]
            pending.set_exception(exc)
            raise
        with self.lock:
            self.items[key] = value
            del self.loading[key]
            while len(self.items) > self.capacity:
                self.items.popitem(last=False)
        pending.set_result(value)
        return value


class Listed(Protocol):
    """A shard as a dataset lists it."""

    @property
    def path(self) -> str: ...
    @property
    def n_jets(self) -> int: ...


class Listing(Protocol):
    """What a format's root files are made from: the dataset's manifest (``dataset.manifest.Manifest``), as far
    as a format reads it."""

    @property
    def version(self) -> int: ...
    @property
    def generation(self) -> int: ...
    @property
    def n_jets(self) -> int: ...
    @property
    def shards(self) -> Sequence[Listed]: ...
    @property
    def columns(self) -> TableColumns: ...


@dataclass(frozen=True)
class RootFiles:
    """Files a format keeps at a dataset's root beside the manifest (a Zarr root group), made from the manifest at
    every commit and installed as it is (never over a newer lease generation's: ``generation`` reads which one
    wrote a file)."""

    keys: tuple[str, ...]
    make: Callable[[Listing], dict[str, bytes]]
    generation: Callable[[bytes], int]


@dataclass(frozen=True)
class Format:
    """A registered storage format: shard file suffix plus its writer and reader classes (and the files it keeps
    at a dataset's root, if any)."""

    name: str
    suffix: str
    writer: type[ShardWriter]
    reader: Callable[..., ShardReader]
    root: RootFiles | None = None
