"""The Dask task that converts the pieces of one task (entry ranges of one or several inputs) into one committed
shard, or reuses it.

What goes into the shard is decided here (the jets of the entry range, sorted by the schema's ``sort_by``);
how it is staged, published and committed belongs to :class:`jetstore.dataset.writer.DatasetWriter`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from jetstore.conversion.read import read_range
from jetstore.conversion.tasks import ShardTask
from jetstore.dataset.manifest import ShardEntry
from jetstore.dataset.writer import DatasetWriter
from jetstore.errors import InputError, JetstoreError, LeaseError, StorageError, TaskFailure
from jetstore.formats import get_format
from jetstore.io import locations, settings, storage_errors
from jetstore.model.layout import ENTRY, INPUT, Layout, TableColumns
from jetstore.model.table import JetTable, class_index, content_counts, is_member, overlaps
from jetstore.schema import Schema
from jetstore.schema.model import SORT_BY_LABEL


@dataclass(frozen=True)
class ShardJob:
    """Everything a worker needs to produce one shard."""

    task: ShardTask
    schema: Schema
    writer: DatasetWriter
    format: str
    layout: Layout
    columns: TableColumns
    read_step: int
    input_options: settings.StorageOptions


@dataclass(frozen=True)
class ShardOutcome:
    entry: ShardEntry
    reused: bool


def run_shard(job: ShardJob) -> ShardOutcome | TaskFailure:
    """Dask task: convert (or verify and reuse) one shard.

    Input failures come back as a :class:`TaskFailure` naming the input; failures of the output storage
    (or a lost write lease) as one marked ``storage``; secrets are scrubbed from both. Only bugs raise.
    """
    url = job.task.urls[0]
    try:
        existing = job.writer.committed(job.task.name, job.task.key)
        if existing is not None:
            return ShardOutcome(existing, reused=True)
        return ShardOutcome(_write_shard(job), reused=False)
    except InputError as exc:
        return TaskFailure(exc.url, _scrub(job, exc.reason))
    except (LeaseError, StorageError) as exc:
        return TaskFailure(url, _scrub(job, str(exc)), storage=True)
    except (JetstoreError, OSError) as exc:
        return TaskFailure(url, _scrub(job, f"shard {job.task.name}: {type(exc).__name__}: {exc}"),
                           storage=isinstance(exc, OSError))
    except Exception as exc:  # botocore's connection and client errors are not OSErrors
        error = storage_errors.failure(exc, job.writer.url, job.writer.options)
        if error is None:
            raise
        return TaskFailure(url, _scrub(job, str(error)), storage=True)


def _write_shard(job: ShardJob) -> ShardEntry:
    task, schema = job.task, job.schema
    shard_format = get_format(job.format)
    with job.writer.staging() as staging:
        local = staging / f"{task.name}{shard_format.suffix}"
        writer = shard_format.writer(local, job.columns, job.layout)
        pieces: Iterable[JetTable] = _read_pieces(job)
        if schema.sort_by:  # sorting needs the whole shard in memory (bounded by --jets-per-shard)
            tables = [table for table in pieces if table.n_jets]
            whole = JetTable.concat(tables) if tables else None
            pieces = [whole.take(sort_order(whole, schema))] if whole is not None else []
        n_jets, class_counts = 0, dict.fromkeys(schema.label_names, 0)
        node_counts = {b.name: 0 for b in schema.blocks}
        for table in pieces:
            writer.write(table)
            counts = content_counts(table, schema.label_names)
            n_jets += counts["n_jets"]
            for total, key in ((class_counts, "class_counts"), (node_counts, "node_counts")):
                for name, value in counts[key].items():
                    total[name] += value
        writer.close()
        return job.writer.commit(task.name, local, shard_format.suffix, task.key,
                                 pieces=tuple(p.record for p in task.pieces), n_jets=n_jets,
                                 class_counts=class_counts, node_counts=node_counts)


def _read_pieces(job: ShardJob) -> Iterator[JetTable]:
    """The jets of every piece of the task, each marked with its piece (``_input``)."""
    for index, piece in enumerate(job.task.pieces):
        for table in read_range(piece.info, job.schema, piece.entry_start, piece.entry_stop, job.input_options,
                                job.read_step):
            _check_labels(piece.info.url, job.schema, table)
            yield JetTable({**table.jets, INPUT: np.full(table.n_jets, index, np.int32)}, table.blocks)


def sort_order(table: JetTable, schema: Schema) -> np.ndarray:
    """Stable order by the schema's ``sort_by`` keys (``label``: class index, jets without one last).

    Sorting shards by (label, jet pT) makes every reweighting bin a contiguous run of units, so the
    sampler reads little more than the jets it keeps."""
    keys = []
    for key in schema.sort_by:
        if key == SORT_BY_LABEL:
            index = class_index([table.jets[name] for name in schema.label_names])
            keys.append(np.where(index < 0, len(schema.label_names), index))
        else:
            keys.append(table.jets[key])
    return np.lexsort(keys[::-1])


def _check_labels(url: str, schema: Schema, table: JetTable) -> None:
    """One-hot labels must not overlap: a jet in two classes is refused, naming the first such entry and its
    labels."""
    one_hot = [table.jets[name] for name in schema.label_names]
    jets = overlaps(one_hot)
    if len(jets):
        jet = int(jets[np.argmin(table.jets[ENTRY][jets])])
        labels = [name for name, column in zip(schema.label_names, one_hot, strict=True) if is_member(column[jet])]
        raise InputError(url, f"entry {int(table.jets[ENTRY][jet])}: the one-hot labels {', '.join(labels)} are all "
                              "set; a jet may have one label at most")


def _scrub(job: ShardJob, text: str) -> str:
    return locations.scrub_urls(job.writer.options.scrub(job.input_options.scrub(text)), list(job.task.urls))
