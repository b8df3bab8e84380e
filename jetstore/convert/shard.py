"""The Dask task that converts one (file, entry range) into one committed shard, or reuses it.

A shard is built in a staging directory, published (atomic rename locally, single PUTs on S3), and only
then committed by writing its record under ``_commits/``. A rerun reuses a shard only if its record has
the same task key and every file still has the recorded size and checksum.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from jetstore.convert.plan import ShardTask
from jetstore.convert.root_input import read_range
from jetstore.errors import InputError, JetstoreError, TaskFailure
from jetstore.schema import Schema
from jetstore.schema.model import SORT_BY_LABEL
from jetstore.store import storage
from jetstore.store.checksum import combined_checksum, file_checksum
from jetstore.store.format import Layout, get_format
from jetstore.store.manifest import COMMITS_DIR, SHARDS_DIR, ShardEntry
from jetstore.store.table import JetTable


@dataclass(frozen=True)
class ShardJob:
    """Everything a worker needs to produce one shard."""

    task: ShardTask
    schema: Schema
    output_url: str
    format: str
    layout: Layout
    read_step: int
    input_options: storage.StorageOptions
    output_options: storage.StorageOptions


@dataclass(frozen=True)
class ShardOutcome:
    entry: ShardEntry
    reused: bool


def run_shard(job: ShardJob) -> ShardOutcome | TaskFailure:
    """Dask task: convert (or verify and reuse) one shard.

    Input and storage failures come back as a :class:`TaskFailure` naming the shard and input, with
    any secret scrubbed from the message; only bugs raise.
    """
    url = job.task.source.url
    try:
        fs, root = storage.filesystem(job.output_url, job.output_options)
        existing = committed_entry(fs, root, job.task)
        if existing is not None:
            return ShardOutcome(existing, reused=True)
        return ShardOutcome(_write_shard(job, fs, root), reused=False)
    except InputError as exc:
        return TaskFailure(url, _scrub(job, exc.reason))
    except (JetstoreError, OSError) as exc:
        return TaskFailure(url, _scrub(job, f"shard {job.task.name}: {type(exc).__name__}: {exc}"))


def commit_path(root: str, name: str) -> str:
    return storage.join(root, COMMITS_DIR, f"{name}.json")


def committed_entry(fs, root: str, task: ShardTask) -> ShardEntry | None:
    """The committed shard for ``task`` if its record matches and its files verify, else None."""
    try:
        record = json.loads(fs.cat_file(commit_path(root, task.name)))
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    entry = ShardEntry.from_dict(record)
    if entry.task_key != task.key or not verify_shard(fs, root, entry):
        return None
    return entry


def verify_shard(fs, root: str, entry: ShardEntry) -> bool:
    """True when every file of the shard exists with the recorded size and checksum."""
    path = storage.join(root, entry.path)
    try:
        sizes = storage.list_files(fs, path)
    except FileNotFoundError:
        return False
    if sizes != {name: size for name, (size, _) in entry.files.items()}:
        return False
    return all(file_checksum(fs, storage.join(path, name)) == checksum
               for name, (_, checksum) in entry.files.items())


def _write_shard(job: ShardJob, fs, root: str) -> ShardEntry:
    task, schema = job.task, job.schema
    shard_format = get_format(job.format)
    relative = f"{SHARDS_DIR}/{task.name}{shard_format.suffix}"
    class_counts = dict.fromkeys(schema.label_names, 0)
    n_jets = 0
    with storage.staging_directory(fs, root) as staging:
        local = staging / f"{task.name}{shard_format.suffix}"
        writer = shard_format.writer(local, schema, task.source.dtypes, job.layout)
        pieces = read_range(task.source.url, schema, task.source.dtypes, task.entry_start, task.entry_stop,
                            job.input_options, job.read_step)
        if schema.sort_by:  # sorting needs the whole shard in memory (bounded by --jets-per-shard)
            whole = JetTable.concat(list(pieces))
            pieces = [whole.take(sort_order(whole, schema))] if whole.n_jets else []
        for table in pieces:
            writer.write(table)
            n_jets += table.n_jets
            for label in schema.label_names:
                class_counts[label] += int(np.count_nonzero(table.jets[label]))
        writer.close()
        files = _local_checksums(local)
        storage.publish(fs, local, storage.join(root, relative))
    entry = ShardEntry(
        name=task.name, path=relative, n_jets=n_jets, class_counts=class_counts,
        bytes=sum(size for size, _ in files.values()), checksum=combined_checksum(files), files=files,
        source=task.source.url, entry_start=task.entry_start, entry_stop=task.entry_stop, task_key=task.key,
    )
    storage.write_bytes_atomic(fs, commit_path(root, task.name), json.dumps(entry.to_dict()).encode())
    return entry


def sort_order(table: JetTable, schema: Schema) -> np.ndarray:
    """Stable order by the schema's ``sort_by`` keys (``label``: class index, jets without one last).

    Sorting shards by (label, jet pT) makes every reweighting bin a contiguous run of chunks, so the
    sampler reads little more than the jets it keeps."""
    keys = []
    for key in schema.sort_by:
        if key == SORT_BY_LABEL:
            keys.append(class_index(table, schema.label_names))
        else:
            keys.append(table.jets[key])
    return np.lexsort(keys[::-1])


def class_index(table: JetTable, labels: tuple[str, ...]) -> np.ndarray:
    """Position of the first set one-hot label per jet; ``len(labels)`` where none is set."""
    stacked = np.stack([np.asarray(table.jets[name]) != 0 for name in labels], axis=1)
    return np.where(stacked.any(axis=1), stacked.argmax(axis=1), len(labels))


def _local_checksums(local: Path) -> dict[str, tuple[int, str]]:
    from fsspec.implementations.local import LocalFileSystem

    fs = LocalFileSystem()
    sizes = storage.list_files(fs, str(local))
    return {name: (size, file_checksum(fs, storage.join(str(local), name))) for name, size in sizes.items()}


def _scrub(job: ShardJob, text: str) -> str:
    return job.output_options.scrub(job.input_options.scrub(text))
