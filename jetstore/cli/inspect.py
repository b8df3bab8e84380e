"""``jetstore inspect``: one or several datasets summarised (as text or JSON)."""

from __future__ import annotations

import argparse
import json

from jetstore.cli.common import add_command, add_datasets, open_datasets, print_summary


def add(subparsers, common: argparse.ArgumentParser) -> None:
    inspect = add_command(subparsers, common, "inspect", run, help="summarise one or several datasets")
    add_datasets(inspect)
    inspect.add_argument("--json", action="store_true", help="print the summary as JSON")


def run(args: argparse.Namespace) -> int:
    collection = open_datasets(args)
    if args.json:
        summaries = [dict(sample=member.name, **summary(member.url, member.dataset.manifest)) for member in collection]
        print(json.dumps(summaries[0] if collection.single else {
            "datasets": summaries, "jets": collection.n_jets, "bytes": collection.bytes,
            "samples": list(collection.samples)}, indent=1))
        return 0
    for member in collection:
        print_summary(member.url, member.dataset.manifest, None if collection.single else member.name)
    if not collection.single:
        print(f"union    {collection.n_jets:,} jets in {len(collection)} datasets, samples "
              f"{', '.join(collection.samples)}")
    return 0


def summary(url: str, manifest) -> dict:
    return {"url": url, "format": manifest.format, "jets": manifest.n_jets, "shards": len(manifest.shards),
            "bytes": manifest.bytes, "class_counts": manifest.class_counts, "node_counts": manifest.node_counts,
            "inputs": len(manifest.inputs), "version": manifest.version, "plan_hash": manifest.plan_hash,
            "schema_hash": manifest.schema_hash}
