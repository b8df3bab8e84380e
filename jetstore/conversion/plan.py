"""Cutting validated inputs into shard tasks: one task per (file, entry range), named and keyed stably.

A task's key hashes everything that determines the shard's bytes (input identity, entry range, schema,
dtypes, format, layout). Reruns reuse a committed shard only when its key matches, so changing any of
these redoes exactly the affected shards.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import PurePosixPath

import xxhash

from jetstore.conversion.root_input import InputInfo
from jetstore.store.layout import Layout
from jetstore.store.manifest import SHARD_FORMAT_VERSION
from jetstore.store.storage import public_url


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
        url = public_url(info.url)  # names and keys never carry credentials, and stay stable across presigned URLs
        stem = re.sub(r"[^A-Za-z0-9_.-]", "_", PurePosixPath(url).name.removesuffix(".root")) or "input"
        for start in range(0, info.entries, jets_per_shard):
            stop = min(info.entries, start + jets_per_shard)
            identity = {
                "url": url, "size": info.size, "uuid": info.uuid, "start": start, "stop": stop,
                "schema": schema_hash, "dtypes": info.dtypes, "format": format_name, "layout": layout.to_dict(),
                "format_version": SHARD_FORMAT_VERSION,
            }
            key = xxhash.xxh3_128_hexdigest(json.dumps(identity, sort_keys=True).encode())
            tasks.append(ShardTask(f"{stem}.{start:010d}.{key[:8]}", key, info, start, stop))
    return tasks


def plan_hash(tasks: list[ShardTask]) -> str:
    """Identity of a whole conversion: the sorted task keys."""
    return xxhash.xxh3_64_hexdigest("\n".join(sorted(t.key for t in tasks)).encode())
