"""Orchestrating a conversion on Dask: expand inputs, validate them, plan shards, run or reuse each
shard, then commit the manifest (only when every input converted, unless bad inputs may be skipped)."""

from __future__ import annotations

import datetime
import glob
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from distributed import Client, as_completed
from tqdm import tqdm

from jetstore.convert.plan import ShardTask, plan_hash, plan_shards
from jetstore.convert.root_input import InputInfo, inspect_task
from jetstore.convert.shard import ShardJob, ShardOutcome, run_shard
from jetstore.errors import DatasetError, TaskFailure
from jetstore.schema import Schema
from jetstore.store import storage
from jetstore.store.format import get_format
from jetstore.store.layout import Layout, TableColumns
from jetstore.store.manifest import InputEntry, Manifest
from jetstore.store.writer import DatasetWriter
from jetstore.version import __version__


@dataclass(frozen=True)
class ConvertRequest:
    """What to convert, where to, and how the shards are cut."""

    inputs: tuple[str, ...]
    schema: Schema
    output: str
    format: str = "zarr"
    jets_per_shard: int = 100_000
    layout: Layout = field(default_factory=Layout)
    read_step: int = 20_000
    overwrite: bool = False
    skip_bad_inputs: bool = False
    break_lease: bool = False
    input_options: storage.StorageOptions = field(default_factory=storage.StorageOptions)
    output_options: storage.StorageOptions = field(default_factory=storage.StorageOptions)


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


def convert(request: ConvertRequest, client: Client, progress: bool = True,
            log: Callable[[str], None] | None = None) -> ConvertReport:
    """Run a conversion on ``client``; returns the report (the caller decides the exit code)."""
    log = log or (lambda message: print(message, file=sys.stderr))
    get_format(request.format)
    writer = DatasetWriter(request.output, request.output_options, uuid.uuid4().hex)
    with writer.lease().held(request.break_lease) as previous:
        if previous is not None:
            log(f"took over the write lease of run {previous.run_id[:12]} (pid {previous.pid} on {previous.host})")
            writer.remove_staging(previous.run_id)
        return _convert(request, client, writer, progress, log)


def _convert(request: ConvertRequest, client: Client, writer: DatasetWriter, progress: bool,
             log: Callable[[str], None]) -> ConvertReport:
    if request.overwrite:
        writer.remove_dataset()
    previous = writer.existing_manifest()
    report = ConvertReport(manifest=None)

    urls, report.failures = expand_inputs(request.inputs, request.input_options)
    infos = _inspect_all(client, urls, request, report.failures)
    infos = _consistent_dtypes(infos, report.failures)
    tasks = plan_shards(infos, request.jets_per_shard, request.schema.hash, request.format, request.layout)
    identity = plan_hash(tasks)
    if previous is not None and previous.plan_hash != identity:
        raise DatasetError(f"{request.output}: a dataset with other inputs, schema or options exists here; "
                           "pass --overwrite to replace it")
    columns = TableColumns.build([c.name for c in request.schema.jet_columns],
                                 {b.name: [f.name for f in b.features] for b in request.schema.blocks},
                                 infos[0].dtypes if infos else _float_dtypes(request.schema))
    log(f"converting {len(infos)} input(s) into {len(tasks)} shard(s) → {request.output} [{request.format}]")
    outcomes = _run_tasks(client, tasks, request, writer, columns, report.failures, progress)
    report.written = sum(not o.reused for o in outcomes.values())
    report.reused = sum(o.reused for o in outcomes.values())

    if report.failures and not request.skip_bad_inputs:
        writer.remove_staging()
        return report
    failed = set(report.failures)
    manifest = Manifest(
        format=request.format, schema=request.schema.to_dict(), schema_hash=request.schema.hash,
        plan_hash=identity, layout=request.layout, columns=columns, jets_per_shard=request.jets_per_shard,
        inputs=tuple(InputEntry(i.url, i.entries, i.size, i.uuid) for i in infos if i.url not in failed),
        shards=tuple(outcomes[t.name].entry for t in tasks if t.source.url not in failed),
        skipped_inputs=dict(report.failures),
        created=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        jetstore_version=__version__,
    )
    writer.finish(manifest)
    report.manifest = manifest
    return report


def _float_dtypes(schema: Schema) -> dict[str, str]:
    """Storage dtypes when no input could be inspected (the manifest of an empty dataset)."""
    features = [f for b in schema.blocks for f in b.features]
    return {c.name: c.dtype or "float32" for c in (*schema.jet_columns, *features)}


def expand_inputs(patterns: tuple[str, ...], options: storage.StorageOptions) -> tuple[list[str], dict[str, str]]:
    """Expand globs (local or remote); a pattern that matches nothing is a failure named by the pattern.

    Plain paths are kept even if missing so their validation reports them by name.
    """
    urls: list[str] = []
    failures: dict[str, str] = {}
    for pattern in patterns:
        if not any(ch in pattern for ch in "*?["):
            urls.append(pattern)
            continue
        if storage.is_local(pattern):
            matches = sorted(glob.glob(pattern.removeprefix("file://")))
        else:
            fs, _ = storage.filesystem(pattern, options)
            prefix = f"{storage.protocol(pattern)}://"
            matches = [prefix + m for m in sorted(fs.glob(pattern.split("://", 1)[1]))]
        if not matches:
            failures[pattern] = "no file matches this pattern"
        urls.extend(matches)
    return list(dict.fromkeys(urls)), failures


def _inspect_all(client: Client, urls: list[str], request: ConvertRequest,
                 failures: dict[str, str]) -> list[InputInfo]:
    keys = [f"inspect-{PurePosixPath(u).name}-{i}" for i, u in enumerate(urls)]
    futures = client.map(inspect_task, urls, schema=request.schema, options=request.input_options,
                         key=keys, pure=False)
    infos: list[InputInfo] = []
    for result in client.gather(futures):
        if isinstance(result, TaskFailure):
            failures[result.url] = request.input_options.scrub(result.reason)
        else:
            infos.append(result)
    return infos


def _consistent_dtypes(infos: list[InputInfo], failures: dict[str, str]) -> list[InputInfo]:
    """All inputs must store every column with the same dtype; mismatching inputs are failures."""
    if not infos:
        return infos
    reference = infos[0]
    kept = [reference]
    for info in infos[1:]:
        differing = [k for k, v in info.dtypes.items() if reference.dtypes.get(k) != v]
        if differing:
            name = differing[0]
            failures[info.url] = (f"column '{name}' is {info.dtypes[name]} here but "
                                  f"{reference.dtypes[name]} in {reference.url}")
        else:
            kept.append(info)
    return kept


def _run_tasks(client: Client, tasks: list[ShardTask], request: ConvertRequest, writer: DatasetWriter,
               columns: TableColumns, failures: dict[str, str], progress: bool) -> dict[str, ShardOutcome]:
    jobs = [ShardJob(t, request.schema, writer, request.format, request.layout, columns, request.read_step,
                     request.input_options) for t in tasks]
    futures = client.map(run_shard, jobs, key=[f"convert-{t.name}" for t in tasks], pure=False, retries=0)
    by_future = dict(zip(futures, tasks, strict=True))
    outcomes: dict[str, ShardOutcome] = {}
    jets = 0
    with tqdm(total=len(tasks), unit="shard", disable=not progress, file=sys.stderr, dynamic_ncols=True) as bar:
        for future in as_completed(futures):
            task = by_future[future]
            outcome = future.result()
            if isinstance(outcome, TaskFailure):
                failures.setdefault(outcome.url, outcome.reason)
            else:
                outcomes[task.name] = outcome
                jets += outcome.entry.n_jets
            bar.set_postfix(jets=jets, failed=len(failures), refresh=False)
            bar.update()
    return outcomes
