"""The names inside a dataset root: one home for the folder layout.

Side files start with ``_`` (or ``.``) so ``pyarrow.dataset``, polars, dask and awkward skip them and open
the root of a Parquet dataset as a plain Parquet dataset.

    <root>/_manifest.json          the manifest: the object that makes a folder a dataset (written last)
    <root>/_manifests/<n>.json     every version of the manifest (1: the conversion; one more per append)
    <root>/_lease.json             the write lease of the running `jetstore convert` (absent otherwise)
    <root>/_commits/<shard>.json   one record per finished shard (what a rerun reuses)
    <root>/_stats/<config>.json    statistics per training config (<config>.<union>.json: of a union)
    <root>/shards/<shard><suffix>  the shards
    <root>/.staging/<run>/         local staging of a running conversion (local datasets only)
"""

from __future__ import annotations

MANIFEST = "_manifest.json"
MANIFESTS = "_manifests"
LEASE = "_lease.json"
COMMITS = "_commits"
STATS = "_stats"
SHARDS = "shards"
STAGING = ".staging"


def join(*parts: str) -> str:
    """Join path pieces with '/' (no protocol handling: paths as fsspec gives them)."""
    return "/".join(p.strip("/") if i else p.rstrip("/") for i, p in enumerate(parts) if p)


def commit_path(root: str, shard_name: str) -> str:
    return join(root, COMMITS, f"{shard_name}.json")


def manifest_version_path(root: str, version: int) -> str:
    return join(root, MANIFESTS, f"{version}.json")


def stats_path(root: str, config_hash: str, union: str | None = None) -> str:
    """Stats of a config for this dataset, or (``union``: the identity of several datasets) for a union."""
    return join(root, STATS, f"{config_hash}.json" if union is None else f"{config_hash}.{union}.json")
