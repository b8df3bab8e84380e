"""The names inside a dataset root: one home for the folder layout and for which names are jetstore's own.

Side files start with ``_`` (or ``.``) so ``pyarrow.dataset``, polars, dask and awkward skip them and open
the root of a Parquet dataset as a plain Parquet dataset.

    <root>/_manifest.json                 the manifest: the object that makes a folder a dataset (written last)
    <root>/_lease.json                    the write lease (its generation counts the writers so far)
    <root>/_commits/<shard>.g<G>.json     one record per finished shard (what a rerun reuses)
    <root>/_pending/manifest.g<G>.json    the manifest of writer G while it commits (for completing it)
    <root>/_manifests/<n>.json            every version of the manifest (1: the conversion; one more per append)
    <root>/_stats/<config>.json           statistics per training config (<config>.<union>.json: of a union;
                                          <config>/...: per-shard partial results, reused by reruns)
    <root>/shards/<shard>.g<G><suffix>    the shards: <shard> is <dataset>.<number>.<key> (``shard_name``)
    <root>/zarr.json                      Zarr datasets: the root group, its attributes listing the shards
    <root>/.staging/g<G>-<run>/           local staging of a running conversion (local datasets only)
    <root>/.jetstore.lock                 what conditional writes lock (local datasets only; empty)

``G`` is the generation of the write lease under which a name was written: a writer never writes a name of
another generation, so a writer that lost its lease cannot replace what a newer one wrote, and clean-up
removes only jetstore's names of its own or older generations. Names without ``.g<G>`` were written
before generations existed (generation 0).
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath

MANIFEST = "_manifest.json"
MANIFESTS = "_manifests"
LEASE = "_lease.json"
COMMITS = "_commits"
PENDING = "_pending"
STATS = "_stats"
SHARDS = "shards"
STAGING = ".staging"
ROOT_GROUP = "zarr.json"  # a Zarr dataset's root group (store/format/zarr/root.py): zarr.open_group(root) opens it

RUN_ID = re.compile(r"^[0-9a-f]{32}$")
# <dataset>.<shard number>.<key> (shards of earlier versions: <first input's stem>.<its first entry, 10 digits>.<key>)
TASK_NAME = r"[A-Za-z0-9_][A-Za-z0-9_.-]*\.\d{5,10}\.[0-9a-f]{8}"
_TAG = r"(?:\.g(?P<generation>\d{1,12}))?"
OWNED = {
    SHARDS: re.compile(rf"^(?P<name>{TASK_NAME}){_TAG}(?:\.zarr\.zip|\.parquet)$"),
    COMMITS: re.compile(rf"^(?P<name>{TASK_NAME}){_TAG}\.json$"),
    PENDING: re.compile(r"^manifest\.g(?P<generation>\d{1,12})\.json$"),
    STATS: re.compile(r"^(?P<name>[0-9a-f]{16}(?:\.[0-9a-f]{16})?)(?:\.json)?$"),  # <config>[.<union>].json, <config>/
    STAGING: re.compile(r"^(?:g(?P<generation>\d{1,12})-)?(?P<name>[0-9a-f]{32})$"),
    MANIFESTS: re.compile(r"^(?P<name>\d{1,12})\.json$"),
}
LOCK = ".jetstore.lock"  # local disk: what conditional writes lock (store/backend/local.py)
TOP_LEVEL = (MANIFEST, LEASE, COMMITS, PENDING, STATS, SHARDS, STAGING, MANIFESTS, LOCK, ROOT_GROUP)
TEMPORARY = re.compile(r"^\..+\.[0-9a-f]{32}\.tmp$")  # an atomic write's temporary file (local disk)


def join(*parts: str) -> str:
    """Join path pieces with '/' (no protocol handling: paths as fsspec gives them)."""
    return "/".join(p.strip("/") if i else p.rstrip("/") for i, p in enumerate(parts) if p)


def dataset_name(url: str) -> str:
    """What a dataset's shard and export names start with: its folder's name without the suffix
    (``s3://bucket/ak4.zarr`` → ``ak4``), letters, digits, ``_`` and ``-`` only."""
    stem = PurePosixPath(url.rstrip("/").split("://", 1)[-1]).name.split(".")[0]
    return re.sub(r"[^A-Za-z0-9_-]", "_", stem).lstrip("-") or "dataset"


def shard_name(dataset: str, number: int, key: str) -> str:
    """A shard's name: what it holds (the dataset, its number in it) and its task key's first 8 digits."""
    return f"{dataset}.{number:05d}.{key[:8]}"


def shard_key(name: str, suffix: str, generation: int) -> str:
    return f"{SHARDS}/{name}.g{generation}{suffix}"


def record_key(name: str, generation: int) -> str:
    return f"{COMMITS}/{name}.g{generation}.json"


def pending_manifest_key(generation: int) -> str:
    return f"{PENDING}/manifest.g{generation}.json"


def staging_folder(generation: int, run_id: str) -> str:
    return f"{STAGING}/g{generation}-{run_id}"


def manifest_version_path(root: str, version: int) -> str:
    return join(root, MANIFESTS, f"{version}.json")


def stats_path(root: str, config_hash: str, union: str | None = None) -> str:
    """Stats of a config for this dataset, or (``union``: the identity of several datasets) for a union."""
    return join(root, STATS, f"{config_hash}.json" if union is None else f"{config_hash}.{union}.json")
def owned(key: str) -> tuple[str, int] | None:
    """(name, generation) of a key jetstore writes in ``shards/``, ``_commits/``, ``_pending/``, ``_stats/``
    or ``.staging/`` (one level deep), else None: anything else is not jetstore's to delete."""
    found = _parse(key)
    return None if found is None else (found[0], found[1] or 0)


def record_of(shard_path: str) -> str | None:
    """The commit record written with the shard at ``shard_path``."""
    found = _parse(shard_path)
    if found is None:
        return None
    name, generation = found
    return f"{COMMITS}/{name}.json" if generation is None else record_key(name, generation)


def _parse(key: str) -> tuple[str, int | None] | None:
    folder, _, name = key.partition("/")
    pattern = OWNED.get(folder)
    match = pattern.match(name) if pattern is not None and "/" not in name else None
    if match is None:
        return None
    groups = match.groupdict()
    generation = groups.get("generation")
    return groups.get("name") or name, None if generation is None else int(generation)
