"""Cutting validated inputs into shard tasks: one task per (file, entry range), named and keyed stably.

A task's key hashes everything that determines the shard's bytes (input identity, entry range, schema,
dtypes, format, layout). Reruns reuse a committed shard only when its key matches, so changing any of
these redoes exactly the affected shards.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass

import xxhash

from jetstore.conversion.inputs import stem
from jetstore.conversion.read import InputInfo
from jetstore.store.layout import Layout
from jetstore.store.manifest import SHARD_VERSION


@dataclass(frozen=True)
class ShardTask:
    """Entries [entry_start, entry_stop) of one input, converted into the shard ``name``."""

    name: str
    key: str
    source: InputInfo
    entry_start: int
    entry_stop: int


def plan_shards(inputs: list[InputInfo], jets_per_shard: int, schema_hash: str, format_name: str,
                layout: Layout) -> list[ShardTask]:
    """Split every input into consecutive entry ranges of ``jets_per_shard`` entries."""
    tasks = []
    for info in inputs:
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", stem(info.url)) or "input"
        for start in range(0, info.entries, jets_per_shard):
            stop = min(info.entries, start + jets_per_shard)
            identity = {  # "uuid": the content identity (a ROOT file's UUID: ROOT keys are those of format 2)
                "url": info.url, "size": info.size, "uuid": info.identity, "start": start, "stop": stop,
                "schema": schema_hash, "dtypes": info.dtypes, "format": format_name, "layout": layout.to_dict(),
                "format_version": SHARD_VERSION,
            }
            key = xxhash.xxh3_128_hexdigest(json.dumps(identity, sort_keys=True).encode())
            tasks.append(ShardTask(f"{name}.{start:010d}.{key[:8]}", key, info, start, stop))
    return tasks


def plan_hash(task_keys: Iterable[str]) -> str:
    """Identity of a whole conversion (of a dataset's content): its sorted task keys. An append hashes the
    keys of the shards it keeps and of its new tasks, so it equals a one-shot conversion of all the inputs."""
    return xxhash.xxh3_64_hexdigest("\n".join(sorted(task_keys)).encode())
