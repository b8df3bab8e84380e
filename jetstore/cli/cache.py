"""``jetstore cache ls|clear``: what a node-local shard cache holds, per dataset, and clearing it."""

from __future__ import annotations

import argparse
import json

from jetstore.cli.common import add_command
from jetstore.errors import StorageError


def add(subparsers, common: argparse.ArgumentParser) -> None:
    cache = add_command(subparsers, common, "cache", None,
                        help="list or clear a node-local shard cache (the sampler's cache_dir)")
    commands = cache.add_subparsers(dest="cache_command", required=True)
    listing = add_command(commands, common, "ls", list_entries, help="what the cache holds, per dataset")
    listing.add_argument("directory", metavar="DIR", help="the cache directory (cache_dir, --cache-dir)")
    listing.add_argument("--json", action="store_true", help="print every entry as JSON")
    clear = add_command(commands, common, "clear", clear_entries, help="delete what the cache holds")
    clear.add_argument("directory", metavar="DIR", help="the cache directory")
    clear.add_argument("--dataset", metavar="URL", help="only the entries of this dataset")


def _cache_store(directory: str):
    from jetstore.cache import CacheStore  # the CLI loads it only for these commands

    store = CacheStore(directory)
    if not store.exists:
        raise StorageError(f"{directory}: no jetstore cache there")
    return store


def list_entries(args: argparse.Namespace) -> int:
    entries = _cache_store(args.directory).entries()
    if args.json:
        print(json.dumps([{"entry": e.name, **(e.key.to_dict() if e.key else {}), "bytes": e.held,
                           "verified": e.verified, "last_used": e.last_used} for e in entries], indent=1))
        return 0
    groups: dict[str, list] = {}
    for entry in entries:
        groups.setdefault(f"{entry.key.dataset} ({entry.key.endpoint})" if entry.key else "(unreadable)",
                          []).append(entry)
    for name, items in sorted(groups.items()):
        held = sum(e.held for e in items)
        print(f"{name}: {len(items)} shard(s), {held:,} bytes, {sum(e.verified for e in items)} complete and "
              f"verified")
    print(f"total: {sum(e.held for e in entries):,} bytes, {len(entries)} shard(s)")
    return 0


def clear_entries(args: argparse.Namespace) -> int:
    from jetstore.cache import ObjectKey

    dataset = ObjectKey.dataset_of(args.dataset) if args.dataset else None
    gone = _cache_store(args.directory).clear(dataset)
    print(f"deleted {len(gone)} shard(s), {sum(e.held for e in gone):,} bytes")
    return 0
