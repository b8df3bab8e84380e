"""Orchestrating a conversion on Dask: expand inputs, validate them, plan shards, run or reuse each
shard, then commit the manifest (only when every input converted, unless bad inputs may be skipped)."""

from __future__ import annotations

import datetime
import glob
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from distributed import Client, as_completed
from tqdm import tqdm

import jetstore
from jetstore.convert.plan import ShardTask, plan_hash, plan_shards
from jetstore.convert.root_input import InputInfo, inspect_task
from jetstore.convert.shard import ShardJob, ShardOutcome, run_shard
from jetstore.errors import DatasetError, TaskFailure
from jetstore.schema import Schema
from jetstore.store import storage
from jetstore.store.format import Layout, get_format
from jetstore.store.manifest import (
    COMMITS_DIR,
    MANIFEST_NAME,
    SHARDS_DIR,
    InputEntry,
    Manifest,
    read_manifest,
    write_manifest,
)


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
    fs, root = storage.filesystem(request.output, request.output_options)
    if request.overwrite:
        storage.remove(fs, root)
    previous = _existing_manifest(fs, root)
    report = ConvertReport(manifest=None)

    urls, report.failures = expand_inputs(request.inputs, request.input_options)
    infos = _inspect_all(client, urls, request, report.failures)
    infos = _consistent_dtypes(infos, report.failures)
    tasks = plan_shards(infos, request.jets_per_shard, request.schema.hash, request.format, request.layout)
    identity = plan_hash(tasks)
    if previous is not None and previous.plan_hash != identity:
        raise DatasetError(f"{request.output}: a dataset with other inputs, schema or options exists here; "
                           "pass --overwrite to replace it")
    log(f"converting {len(infos)} input(s) into {len(tasks)} shard(s) → {request.output} [{request.format}]")
    outcomes = _run_tasks(client, tasks, request, report.failures, progress)
    report.written = sum(not o.reused for o in outcomes.values())
    report.reused = sum(o.reused for o in outcomes.values())

    if report.failures and not request.skip_bad_inputs:
        return report
    failed = set(report.failures)
    kept_inputs = [i for i in infos if i.url not in failed]
    kept_shards = [outcomes[t.name].entry for t in tasks if t.source.url not in failed]
    manifest = Manifest(
        format=request.format, schema=request.schema.to_dict(), schema_hash=request.schema.hash,
        plan_hash=identity,
        inputs=tuple(InputEntry(i.url, i.entries, i.size, i.uuid) for i in kept_inputs),
        shards=tuple(kept_shards),
        options={"jets_per_shard": request.jets_per_shard, "layout": vars(request.layout),
                 "dtypes": infos[0].dtypes if infos else {}},
        skipped_inputs=dict(report.failures),
        created=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        jetstore_version=jetstore.__version__,
    )
    write_manifest(fs, root, manifest)
    _collect_garbage(fs, root, manifest)
    report.manifest = manifest
    return report


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


def _existing_manifest(fs, root: str) -> Manifest | None:
    if not fs.exists(storage.join(root, MANIFEST_NAME)):
        return None
    return read_manifest(fs, root)


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


def _run_tasks(client: Client, tasks: list[ShardTask], request: ConvertRequest, failures: dict[str, str],
               progress: bool) -> dict[str, ShardOutcome]:
    jobs = [ShardJob(t, request.schema, request.output, request.format, request.layout, request.read_step,
                     request.input_options, request.output_options) for t in tasks]
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


def _collect_garbage(fs, root: str, manifest: Manifest) -> None:
    """Remove shards and commit records the manifest does not reference, and staging leftovers."""
    referenced = {PurePosixPath(s.path).name for s in manifest.shards}
    names = {s.name for s in manifest.shards}
    for directory, keep in ((SHARDS_DIR, referenced), (COMMITS_DIR, {f"{n}.json" for n in names})):
        path = storage.join(root, directory)
        if not fs.exists(path):
            continue
        for item in fs.ls(path, detail=False):
            if PurePosixPath(item).name not in keep:
                storage.remove(fs, item)
    storage.remove(fs, storage.join(root, ".staging"))
