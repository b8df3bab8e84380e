"""``jetstore verify``: every shard checked against the manifest's checksums; damaged ones named (exit 1)."""

from __future__ import annotations

import argparse
import sys

from jetstore.cli.common import add_command, add_datasets, open_datasets


def add(subparsers, common: argparse.ArgumentParser) -> None:
    verify = add_command(subparsers, common, "verify", run, help="check every shard against the manifest's checksums")
    add_datasets(verify)


def run(args: argparse.Namespace) -> int:
    collection = open_datasets(args)
    bad = total = 0
    for member in collection:
        dataset = member.dataset
        for shard in dataset.manifest.shards:
            problems = dataset.verify(shard)
            for problem in problems:
                print(f"{member.url}: shard {shard.path}: {problem}", file=sys.stderr)
            bad += bool(problems)
            total += 1
    print(f"{total - bad} of {total} shard(s) verified")
    return 1 if bad else 0
