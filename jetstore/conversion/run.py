"""Orchestrating a conversion: checks and the write lease before any cluster starts (:func:`session`), then
on Dask validate the inputs, plan shards, run or reuse each shard, and commit the manifest (only when
every input converted, unless bad inputs may be skipped; a storage failure is never blamed on an input).
With ``append`` the inputs are added to the existing dataset (:mod:`jetstore.conversion.append`)."""

from __future__ import annotations

import contextlib
import datetime
import logging
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from distributed import Client, as_completed
from tqdm import tqdm

from jetstore.conversion import append
from jetstore.conversion.inputs import get_kind
from jetstore.conversion.read import InputInfo, inspect_task
from jetstore.conversion.request import ConvertRequest, expand_inputs
from jetstore.conversion.shard import ShardJob, ShardOutcome, run_shard
from jetstore.conversion.tasks import Naming, ShardTask, pack, plan_hash, plan_shards
from jetstore.dataset.manifest import Manifest, jets_per_entry
from jetstore.dataset.writer import DatasetWriter
from jetstore.errors import DatasetError, InputError, JetstoreError, StorageError, TaskFailure
from jetstore.formats import get_format
from jetstore.io import locations, settings, storage_errors
from jetstore.io.backend import open_backend
from jetstore.model import paths
from jetstore.model.layout import TableColumns
from jetstore.schema import Schema
from jetstore.version import __version__

LOG = logging.getLogger(__name__)


@dataclass
class ConvertReport:
    """Outcome of a run: the committed manifest (None if not committed) and what failed."""

    manifest: Manifest | None
    failures: dict[str, str] = field(default_factory=dict)
    written: int = 0
    reused: int = 0

    @property
    def ok(self) -> bool:
        return not self.failures


@contextlib.contextmanager
def session(request: ConvertRequest, log: Callable[[str], None] | None = None) -> Iterator[Session]:
    """Everything checked before a cluster is started: the format, local paths made absolute, the inputs
    found, the output location reachable, writable and free (its write lease taken, held until the block
    ends). Failures are one-line errors: storage ones :class:`StorageError`, a held lease :class:`LeaseError`."""
    log = log or LOG.info
    get_format(request.format)
    if request.schema.source is not None:
        get_kind(request.schema.source)
    if request.append and request.overwrite:
        raise JetstoreError("--append adds to a dataset, --overwrite replaces it: give one of them")
    request = request.resolved()
    urls, failures = expand_inputs(request.inputs, request.input_options)
    if not urls:
        raise InputError(", ".join(map(locations.public_url, request.inputs)), "no input to convert: " + "; ".join(
            f"{url}: {reason}" for url, reason in failures.items()))
    writer = DatasetWriter(request.output, request.output_options, uuid.uuid4().hex,
                           jets_per_entry(request.schema.to_dict()), reuse=not request.overwrite)
    with storage_errors.access(request.output, request.output_options):
        open_backend(request.output, settings.probe_options(request.output_options)).check()  # few retries
        if request.overwrite:
            writer.check_owned()
        with writer.hold(request.break_lease) as (writer, previous):
            if previous is not None:
                log(f"took over the write lease of run {previous.run_id[:12]} (pid {previous.pid} on {previous.host})")
            if request.append:
                append.check_appendable(request, writer.existing_manifest())
            yield Session(request, urls, failures, writer, log)


@dataclass
class Session:
    """A conversion ready to run: checked request, found inputs, and the held write lease."""

    request: ConvertRequest
    urls: list[str]
    failures: dict[str, str]
    writer: DatasetWriter
    log: Callable[[str], None]

    def run(self, client: Client, progress: bool = True) -> ConvertReport:
        """Convert on ``client``; returns the report (the caller decides the exit code)."""
        with storage_errors.access(self.request.output, self.request.output_options):
            return _convert(self.request, client, self.writer, self.urls, dict(self.failures), progress, self.log)


def _convert(request: ConvertRequest, client: Client, writer: DatasetWriter, urls: list[str],
             failures: dict[str, str], progress: bool, log: Callable[[str], None]) -> ConvertReport:
    previous = None if request.overwrite else writer.existing_manifest()  # replaced when the new one commits
    base = append.check_appendable(request, previous) if request.append else None
    report = ConvertReport(manifest=None, failures=failures)
    infos = _inspect_all(client, urls, request, report.failures)
    if base is not None:
        infos = append.new_inputs(infos, base, report.failures, log)
        if not infos and not report.failures:
            log(f"nothing to append: {request.output} already holds every input")
            report.manifest = base
            return report
    reference = {k: v.name for k, v in base.columns.dtypes.items()} if base is not None else None
    infos = _consistent_dtypes(infos, report.failures, reference, request.output)
    naming = Naming(paths.dataset_name(request.output), len(base.shards) if base is not None else 0,
                    {s.task_key: s.name for s in previous.shards} if previous is not None else {})
    tasks = plan_shards(infos, request.jets_per_shard, request.schema.hash, request.format, request.layout, naming)
    identity = plan_hash(t.key for t in tasks)
    if base is None and previous is not None and previous.plan_hash != identity:
        raise DatasetError(f"{request.output}: a dataset with other inputs, schema or options (or written by an "
                           "earlier jetstore) exists here; pass --append to add inputs to it, or --overwrite to "
                           "replace it")
    columns = base.columns if base is not None else _columns(request.schema, infos)
    log(f"{'appending' if base else 'converting'} {len(infos)} input(s) into {len(tasks)} shard(s) → "
        f"{request.output} [{request.format}]")
    tasks, outcomes, storage_failures = _run_settled(client, tasks, request, writer, columns, report.failures,
                                                     progress)
    report.written = sum(not o.reused for o in outcomes.values())
    report.reused = sum(o.reused for o in outcomes.values())
    if storage_failures:
        # when another run took the lease, that is the cause: a LeaseError names it, and this run touches
        # nothing more (the new holder removes this run's staging)
        writer.lease().check()
        writer.remove_staging()
        first = next(iter(storage_failures.values()))
        raise StorageError(f"{len(storage_failures)} shard(s) could not be written: {first} "
                           f"({report.written} written, {report.reused} reused; rerun to resume)")

    failed = set(report.failures)  # the inputs left out, as given
    report.failures = {locations.public_url(url): locations.scrub_urls(reason, urls)
                       for url, reason in report.failures.items()}
    if report.failures and not request.skip_bad_inputs:
        writer.remove_staging()
        return report
    inputs = tuple(append.entry_of(i) for i in infos if i.url not in failed)
    shards = tuple(outcomes[t.name].entry for t in tasks)
    skipped, version = dict(report.failures), previous.version if previous is not None else 1
    if base is not None:
        inputs, shards, skipped = append.merged(base, inputs, shards, skipped)
        identity, version = plan_hash(s.task_key for s in shards), base.version + 1
    manifest = Manifest(
        format=request.format, schema=request.schema.to_dict(), schema_hash=request.schema.hash,
        plan_hash=identity, layout=request.layout, columns=columns, jets_per_shard=request.jets_per_shard,
        inputs=inputs, shards=shards, skipped_inputs=skipped, version=version,
        created=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        jetstore_version=__version__,
    )
    report.manifest = writer.finish(manifest)
    return report


def _run_settled(client: Client, tasks: list[ShardTask], request: ConvertRequest, writer: DatasetWriter,
                 columns: TableColumns, failures: dict[str, str],
                 progress: bool) -> tuple[list[ShardTask], dict[str, ShardOutcome], dict[str, str]]:
    """Run the shard tasks. An input found bad while its shard is written fails as a whole: the tasks holding a
    piece of it are left out and the other inputs' pieces they held are packed again and converted, until no
    task holds a bad input. Returns the tasks that make the dataset, their outcomes and the storage failures."""
    outcomes, storage_failures = _run_tasks(client, tasks, request, writer, columns, failures, progress)
    while not storage_failures:
        bad = set(failures)
        broken = [task for task in tasks if set(task.urls) & bad]
        partners = [piece for task in broken for piece in task.pieces if piece.info.url not in bad]
        tasks = [task for task in tasks if not set(task.urls) & bad]
        if not partners:
            break
        naming = Naming(paths.dataset_name(request.output), max(t.number for t in [*tasks, *broken]) + 1)
        retry = pack(partners, request.jets_per_shard, request.schema.hash, request.format, request.layout, naming)
        more, storage_failures = _run_tasks(client, retry, request, writer, columns, failures, progress)
        outcomes.update(more)
        tasks += retry
    return tasks, outcomes, storage_failures


def _columns(schema: Schema, infos: list[InputInfo]) -> TableColumns:
    """The stored columns: the dtypes of the inputs, or when none could be inspected (the manifest of an empty
    dataset) the schema's, float32 where it names none."""
    features = [f for b in schema.blocks for f in b.features]
    dtypes = infos[0].dtypes if infos else {c.name: c.dtype or "float32" for c in (*schema.jet_columns, *features)}
    return TableColumns.build([c.name for c in schema.jet_columns],
                              {b.name: [f.name for f in b.features] for b in schema.blocks}, dtypes)


def _inspect_all(client: Client, urls: list[str], request: ConvertRequest,
                 failures: dict[str, str]) -> list[InputInfo]:
    run = uuid.uuid4().hex[:8]  # keys of this call only: a shared cluster may hold another run's tasks
    keys = [f"inspect-{PurePosixPath(locations.public_url(u)).name}-{i}-{run}" for i, u in enumerate(urls)]
    futures = client.map(inspect_task, urls, schema=request.schema, options=request.input_options,
                         key=keys, pure=False)
    infos: list[InputInfo] = []
    for result in client.gather(futures):
        if isinstance(result, TaskFailure):
            failures[result.url] = locations.scrub_urls(request.input_options.scrub(result.reason), urls)
        else:
            infos.append(result)
    return infos


def _consistent_dtypes(infos: list[InputInfo], failures: dict[str, str], reference: dict[str, str] | None,
                       output: str) -> list[InputInfo]:
    """All inputs must store every column with the same dtype (as the first input, or as the dataset appended
    to); mismatching inputs are failures."""
    if not infos:
        return infos
    where = f"the dataset at {output}" if reference is not None else infos[0].url
    reference = reference if reference is not None else infos[0].dtypes
    kept = []
    for info in infos:
        differing = [k for k, v in info.dtypes.items() if reference.get(k) != v]
        if differing:
            name = differing[0]
            failures[info.url] = f"column '{name}' is {info.dtypes[name]} here but {reference[name]} in {where}"
        else:
            kept.append(info)
    return kept


def _run_tasks(client: Client, tasks: list[ShardTask], request: ConvertRequest, writer: DatasetWriter,
               columns: TableColumns, failures: dict[str, str],
               progress: bool) -> tuple[dict[str, ShardOutcome], dict[str, str]]:
    """Run every shard task; returns the outcomes, and the storage failures by shard (input failures go
    into ``failures``). The first storage failure (retries exhausted) cancels the tasks not yet done: with
    the output unusable they would each wait out their retries; a rerun resumes."""
    jobs = [ShardJob(t, request.schema, writer, request.format, request.layout, columns, request.read_step,
                     request.input_options) for t in tasks]
    run = uuid.uuid4().hex[:8]  # as in _inspect_all: never another run's task (or its error) by the same name
    futures = client.map(run_shard, jobs, key=[f"convert-{t.name}-{run}" for t in tasks], pure=False, retries=0)
    by_future = dict(zip(futures, tasks, strict=True))
    outcomes: dict[str, ShardOutcome] = {}
    storage_failures: dict[str, str] = {}
    jets = 0
    with tqdm(total=len(tasks), unit="shard", disable=not progress, file=sys.stderr, dynamic_ncols=True) as bar:
        for future in as_completed(futures):
            task = by_future[future]
            outcome = future.result()
            if isinstance(outcome, TaskFailure) and outcome.storage:
                storage_failures[task.name] = outcome.reason
                client.cancel([f for f in futures if not f.done()])
                break
            elif isinstance(outcome, TaskFailure):
                failures.setdefault(outcome.url, outcome.reason)
            else:
                outcomes[task.name] = outcome
                jets += outcome.entry.n_jets
            bar.set_postfix(jets=jets, failed=len(failures) + len(storage_failures), refresh=False)
            bar.update()
    return outcomes, storage_failures
