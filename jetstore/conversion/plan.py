"""Cutting validated inputs into shard tasks, named and keyed stably.

Every input is cut into pieces of at most ``jets_per_shard`` entries; consecutive pieces are packed into one
task while they add up to at most ``jets_per_shard`` entries, so many small input files (a common way to keep
simulation) make shards of the size asked for, not one small shard each: a shard sorted by (class, pT) over
many jets keeps every reweighting cell in few units, so the sampler reads what it keeps.

A task's key hashes everything that determines the shard's bytes (input identities, entry ranges, schema,
dtypes, format, layout). Reruns reuse a committed shard only when its key matches, so changing any of
these redoes exactly the affected shards. A task is named after what it holds: the dataset and its number in
it (``ak4.00012.<key>``), not after an input (a packed shard holds many).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import xxhash

from jetstore.conversion.read import InputInfo
from jetstore.store import paths
from jetstore.store.layout import Layout
from jetstore.store.manifest import SHARD_VERSION, Piece
from jetstore.store.storage import public_url


@dataclass(frozen=True)
class TaskPiece:
    """Entries [entry_start, entry_stop) of one input."""

    info: InputInfo
    entry_start: int
    entry_stop: int

    @property
    def entries(self) -> int:
        return self.entry_stop - self.entry_start

    @property
    def record(self) -> Piece:
        return Piece(public_url(self.info.url), self.entry_start, self.entry_stop)


@dataclass(frozen=True)
class ShardTask:
    """The pieces converted into the shard ``name`` (in piece order: a jet's ``_input`` is its piece)."""

    name: str
    key: str
    pieces: tuple[TaskPiece, ...]
    number: int = 0

    @property
    def urls(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(piece.info.url for piece in self.pieces))


@dataclass(frozen=True)
class Naming:
    """How a plan's tasks are named: ``<dataset>.<number>.<key>``, numbered from ``first`` (an append continues
    after the dataset's shards); a task whose key is in ``known`` (task key → name: the shards a dataset holds)
    keeps that name, so a dataset copied under another name is still reused by a rerun."""

    dataset: str
    first: int = 0
    known: Mapping[str, str] = field(default_factory=dict)


def plan_shards(inputs: list[InputInfo], jets_per_shard: int, schema_hash: str, format_name: str,
                layout: Layout, naming: Naming) -> list[ShardTask]:
    """Cut every input into pieces of at most ``jets_per_shard`` entries and pack consecutive pieces into tasks
    of at most ``jets_per_shard`` entries."""
    pieces = [TaskPiece(info, start, min(info.entries, start + jets_per_shard))
              for info in inputs for start in range(0, info.entries, jets_per_shard)]
    return pack(pieces, jets_per_shard, schema_hash, format_name, layout, naming)


def pack(pieces: list[TaskPiece], jets_per_shard: int, schema_hash: str, format_name: str,
         layout: Layout, naming: Naming) -> list[ShardTask]:
    """Consecutive pieces packed into tasks of at most ``jets_per_shard`` entries."""
    groups: list[list[TaskPiece]] = []
    size = 0
    for piece in pieces:
        if not groups or size + piece.entries > jets_per_shard:
            groups.append([])
            size = 0
        groups[-1].append(piece)
        size += piece.entries
    return [_task(tuple(group), schema_hash, format_name, layout, naming, naming.first + number)
            for number, group in enumerate(groups)]


def _task(pieces: tuple[TaskPiece, ...], schema_hash: str, format_name: str, layout: Layout, naming: Naming,
          number: int) -> ShardTask:
    """Shard ``number`` of the dataset, keyed by its pieces."""
    identity = {
        "pieces": [{"url": public_url(p.info.url), "size": p.info.size, "identity": p.info.identity,
                    "start": p.entry_start, "stop": p.entry_stop} for p in pieces],
        "schema": schema_hash, "dtypes": pieces[0].info.dtypes, "format": format_name, "layout": layout.to_dict(),
        "format_version": SHARD_VERSION,
    }
    key = xxhash.xxh3_128_hexdigest(json.dumps(identity, sort_keys=True).encode())
    return ShardTask(naming.known.get(key) or paths.shard_name(naming.dataset, number, key), key, pieces, number)


def plan_hash(task_keys: Iterable[str]) -> str:
    """Identity of a whole conversion (of a dataset's content): its sorted task keys. An append hashes the
    keys of the shards it keeps and of its new tasks, so it equals a one-shot conversion of all the inputs."""
    return xxhash.xxh3_64_hexdigest("\n".join(sorted(task_keys)).encode())
