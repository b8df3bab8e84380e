"""Benchmark the streaming sampler: local disk and S3 behind a latency proxy, threads and DataLoader
workers, a JetClass-style dataset, natural epochs against weaver-core, memory at 1× and 10× the data.

    python bench/sampler.py [--copies 4] [--sections mix,units,fractions,s3fractions,startup,local,weaver,s3,cache,
                                              presigned,jetclass,oneclass,natural,memory,profile] [--chunk-jets 256]

One run, side by side, on ``--copies`` copies of ../shared/data/cms_ak4 (distinct names, symlinked)
converted to Zarr and Parquet with 100k-jet shards, config ../shared/bench/weaver_cms_ak4.yaml:

* mix: per-epoch (class, pT, eta) total variation from weaver's target at 1/40, 1/10, natural and full epochs,
  several seeds, against an i.i.d. draw of the same size, and the worst cell after ``--mix-epochs`` epochs in
  i.i.d. sigmas, on jittered cms_ak4 (~270k jets) and on one-class-per-file data, with ``read_factor`` 1, 2, 4;
* units: the ~270k jittered cms_ak4 jets converted once per ``--chunk-jets`` unit size (e.g. 256,128,64), side by
  side: convert time, stored bytes, full / 1/10 / 1/40 rates per core and bytes per delivered jet, per-epoch TV
  against an i.i.d. draw at 1/40, 1/10, natural and full epochs, every byte over S3 of 1/40 and 2,048-jet epochs
  (``--chunk-jets`` also gives the mix, s3fractions and profile sections one cms_ak4 dataset per unit size);
* s3fractions: 1/10, 1/40 and 2,048-jet weighted epochs over S3 (moto through the byte-counting proxy), each in
  a fresh process: every byte on the wire (metadata included) per delivered jet; the shards' metadata alone, and
  the 2,048-jet epoch again with the shards read by their zip directory (as shards written before the chunk
  index);
* fractions: weighted epochs that are 1/10 and 1/40 of the data (and full ones) on jittered copies of cms_ak4
  at ~270k, ~2.7M and ~10M jets (``--fraction-copies``), beside the former layout (2,048-jet units, a shard per
  input file), Parquet and small shards: jets/s per core, bytes fetched per delivered jet, the (class, pT, eta)
  mix, repeats and units per batch against an i.i.d. draw; a 2,048-jet epoch's fetched share;
* startup: from ``JetDataset(...)`` to the first batch in a fresh process, at each of those sizes;
* local: delivered jets/s per core (jets / CPU seconds of the process and its DataLoader workers) and wall,
  bytes read per delivered jet, with 1 and 2 reader threads and with 2 DataLoader workers, with and
  without the config's ``weights`` block; beside the limit (decode every needed array + pad, no sampling);
* weaver: weaver-core 0.5.3's own loader on symlinked copies of the ROOT files (0 and 2 workers), with fetches
  of ~1.4k jets (fetch-step 0.01) and of the 10k-50k jets production runs use;
* s3: the Zarr dataset on a moto S3 server (its own process) behind a proxy (its own process) that adds
  30 ms to every request and counts bytes; the same epochs from local disk and with 0 ms; bytes on the
  wire per delivered jet, and for a 2,048-jet epoch;
* cache: the node-local cache (``cache_dir``) over S3 + 30 ms (moto, or ``--ceph``): epochs 1, 2 and 10 of full and
  1/10 weighted epochs against local disk and against S3 without the cache, bytes from S3 per epoch, and two
  ranks (processes) of one node sharing a cache;
* presigned: first epochs (full and 1/10) over S3 + 30 ms with a fresh cache, byte ranges through botocore and
  through presigned URLs (``jetstore.io.backend.presigned``), each beside a local-disk epoch,
  ``--presigned-runs`` times, and the medians of the ratios;
* jetclass: JetClass-style jets (~45 particles, 128-particle padded inputs; tests/fixtures/make_sample.py);
* natural: epochs of the natural weighted size on a ~10k-jet held-out dataset (two files), against
  weaver-core on the same files: jets/s, epoch start-up time, (class, pT, eta) mix against weaver's target;
* memory: peak RSS of a process reading one 135k-jet epoch from datasets of 1× and 10× the jets;
* profile: py-spy on full weighted epochs (1 and 2 threads): where the active samples go, and which of them hold
  the GIL (the share threads cannot run in parallel).
"""

from __future__ import annotations

import argparse
import copy
import glob
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from common import best_of, copies_of  # noqa: E402

from jetstore import JetDataset, compute_stats, convert, load_schema  # noqa: E402
from jetstore.config.weaver import training_config_from_dict  # noqa: E402
from jetstore.conversion.cluster import dask_client  # noqa: E402
from jetstore.dataset.dataset import Dataset  # noqa: E402
from jetstore.formats.zarr import chunk_index, directory  # noqa: E402
from jetstore.io.backend import presigned  # noqa: E402
from jetstore.model.layout import Layout  # noqa: E402
from jetstore.sampler.batch import BatchBuilder  # noqa: E402
from jetstore.stats.result import read_stats, write_stats  # noqa: E402
from tests.fixtures.jittered import jittered_copies  # noqa: E402
from tests.fixtures.mixing import (  # noqa: E402
    histogram,
    iid_variation,
    jet_keys,
    jet_weights,
    repeats,
    target_of,
    variation,
    worst_pull,
)
from tests.helpers import forget_shard_metadata, shard_entries, with_comment  # noqa: E402

SHARED = REPO.parent / "shared"
BATCH = 512
WORKER_PIDS: list[int] = []
CONVERT_SECONDS: dict[str, float] = {}  # wall seconds of each conversion made in this run, by URL
SEEN_CPU: dict[int, float] = {}


def cpu_seconds() -> float:
    """CPU time of this process and of the live DataLoader workers (read from /proc)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    total = own.ru_utime + own.ru_stime
    for pid in WORKER_PIDS:
        total += _proc_cpu(pid)
    return total


def _proc_cpu(pid: int) -> float:
    """A process's CPU seconds; once it has exited (a DataLoader worker done with its part), the last seen."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        SEEN_CPU[pid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError):
        pass
    return SEEN_CPU.get(pid, 0.0)


def measure(batches, label: str = "_label_") -> dict:
    wall, cpu = time.perf_counter(), cpu_seconds()
    jets = 0
    for batch in batches:
        jets += len(batch[label])
        cpu_seconds()  # a worker's time is read while it lives
    return {"jets": jets, "wall": time.perf_counter() - wall, "cpu": cpu_seconds() - cpu}


def line(name: str, result: dict, extra: str = "") -> str:
    per_core = f"{result['jets'] / result['cpu']:>10,.0f}" if result.get("cpu") else f"{'n/a':>10}"
    text = f"| {name:<52} | {per_core} | {result['jets'] / result['wall']:>10,.0f} | {extra} |"
    print(text, flush=True)
    return text


def header(title: str, columns: str = "jets/s per core | jets/s wall | notes") -> None:
    rule = " | ".join(["---", "---:", "---:"] + ["---"] * (columns.count("|") - 1))
    print(f"\n### {title}\n\n| | {columns} |\n| {rule} |", flush=True)


# ---------------------------------------------------------------- datasets


def build(client, inputs: list[str], url: str, fmt: str, schema: str, configs) -> Dataset:
    if not Path(url, "_manifest.json").exists():
        convert(inputs, load_schema(schema), url, format=fmt, client=client, progress=False)
    dataset = Dataset.open(url)
    for config in configs:
        try:
            read_stats(dataset, config.hash)
        except Exception:
            write_stats(dataset, compute_stats(dataset, config, client, log=lambda _: None))
    return dataset


# ---------------------------------------------------------------- jetstore runs


def run_jetstore(url, config, jets_per_epoch, threads=1, workers=0, epochs=2, options=None, seed=1):
    ds = JetDataset(url, config, batch_size=BATCH, seed=seed, jets_per_epoch=jets_per_epoch, threads=threads,
                    storage_options=options)
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=workers, persistent_workers=workers > 0)
    for _ in loader:  # warm up: numba compilation, metadata, page cache, worker start-up
        pass
    iterator_workers = getattr(getattr(loader, "_iterator", None), "_workers", [])
    WORKER_PIDS[:] = [w.pid for w in iterator_workers]
    results, fetched = [], 0
    for epoch in range(1, epochs + 1):
        ds.set_epoch(epoch)
        results.append(measure(loader))
        fetched += ds.last_stream.bytes_read if workers == 0 and ds.last_stream else 0
    WORKER_PIDS.clear()
    total = {k: sum(r[k] for r in results) for k in ("jets", "wall", "cpu")}
    total["bytes"] = fetched / total["jets"] if fetched else None
    return total


def raw_limit(dataset: Dataset, config) -> dict:
    """Decode every needed array of every shard and pad all jets into batches: no sampling."""
    stats = read_stats(dataset, config.hash)
    builder = BatchBuilder(dataset.schema, config, {n: (v.center, v.scale) for n, v in stats.variables.items()})
    from jetstore.sampler.arena import Arena, PreparedBlock

    def once() -> dict:
        wall, cpu, jets = time.perf_counter(), cpu_seconds(), 0
        for shard in dataset.manifest.shards:
            table = dataset.source.read(shard, builder.needs.jets, builder.needs.blocks)
            for start in range(0, table.n_jets, 8192):
                compact = builder.prepare(table.slice(start, min(start + 8192, table.n_jets)))
                arena = Arena(compact.n)
                arena.add(PreparedBlock(compact, np.zeros(1, np.int64), np.arange(compact.n), np.array([0, compact.n])))
                for first in range(0, compact.n, BATCH):
                    builder.assemble(arena.view, np.arange(first, min(first + BATCH, compact.n)))
                jets += compact.n
        return {"jets": jets, "wall": time.perf_counter() - wall, "cpu": cpu_seconds() - cpu}

    once()
    return once()


def run_weaver(files, options, workers, seconds: float, fetch_step: float = 0.01) -> tuple[dict, float]:
    """weaver-core's own loader (SimpleIterDataset) for at least ``seconds``, from its first fetch on (a fetch
    reads ``fetch_step`` of every file: with big fetches, the loading is most of the cost and is counted)."""
    import weaver.utils.data.preprocess as preprocess
    from weaver.utils.dataset import SimpleIterDataset

    preprocess.time.sleep = lambda _: None  # its 10 s pauses after warnings are not loading time
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as handle:
        yaml.safe_dump(options, handle)
    start = time.perf_counter()
    ds = SimpleIterDataset({"_": files}, handle.name, batch_size=BATCH, for_training=True,
                           load_range_and_fraction=((0, 1), 1, 1), fetch_by_files=False, fetch_step=fetch_step,
                           name="train")
    init = time.perf_counter() - start
    loader = torch.utils.data.DataLoader(ds, batch_size=BATCH, drop_last=True, num_workers=workers,
                                         persistent_workers=False, prefetch_factor=2 if workers else None)
    wall, cpu = time.perf_counter(), cpu_seconds()
    iterator = iter(loader)
    WORKER_PIDS[:] = [w.pid for w in getattr(iterator, "_workers", [])]
    jets = 0
    for _, y, _ in iterator:
        jets += len(next(iter(y.values())))
        cpu_seconds()  # a worker's time is read while it lives
        if time.perf_counter() - wall > seconds:
            break
    result = {"jets": jets, "wall": time.perf_counter() - wall, "cpu": cpu_seconds() - cpu}
    WORKER_PIDS.clear()
    return result, init


# ---------------------------------------------------------------- sections


def section_local(datasets, configs, args, files) -> None:
    header("local disk, epochs of the dataset's size (jets_per_epoch), batch 512")
    total = datasets["zarr"].manifest.n_jets
    line("limit: decode all needed Zarr arrays + pad, no sampling", raw_limit(datasets["zarr"], configs["weights"]))
    for weighting, config in configs.items():
        for fmt in ("zarr", "parquet"):
            for threads, workers in ((1, 0), (2, 0), (1, 2)):
                result = run_jetstore(datasets[fmt].url, config, total, threads, workers)
                extra = f"{result['bytes']:.0f} B read/jet" if result["bytes"] else ""
                line(f"jetstore {fmt}, {weighting}, {threads} thread(s), {workers} workers", result, extra)
    stored = datasets["zarr"].manifest.bytes / total
    print(f"\nstored: Zarr {stored:.0f} B/jet, Parquet {datasets['parquet'].manifest.bytes / total:.0f} B/jet")


def section_weaver(datasets, configs, args, files) -> None:
    header("weaver-core 0.5.3 on the ROOT files (SimpleIterDataset; a fetch reads fetch-step of every file), "
           "timed from its first fetch for ≥ --weaver-seconds")
    options = yaml.safe_load(Path(args.config).read_text())
    roots = copies_of(sorted(glob.glob(args.inputs)), args.copies, Path(args.scratch) / f"root{args.copies}")
    total = sum(uproot_entries(f) for f in roots)
    for weighting in ("weights", "no weights"):
        variant = copy.deepcopy(options)
        if weighting == "no weights":
            variant.pop("weights")
        for fetch_step in (0.01, 0.1, 0.3) if weighting == "weights" else (0.01, 0.3):
            for workers in (0, 2):
                result, init = run_weaver(roots, variant, workers, args.weaver_seconds, fetch_step)
                line(f"weaver-core, {weighting}, {fetch_step * total:,.0f} jets per fetch, {workers} workers",
                     result, f"init {init:.0f} s")


def uproot_entries(path: str) -> int:
    import uproot

    with uproot.open(path) as handle:
        return handle["Events"].num_entries


class S3Servers:
    """An S3 server behind the latency proxy (its own process): moto (its own process), or an already running
    Ceph RGW given by ``ceph`` (its endpoint URL; tests/ceph/rgw.sh starts one, keys JETKEY / JETSECRET)."""

    def __init__(self, latency: float, ceph: str | None = None):
        self.moto = None
        if ceph:
            self.target, self.key, self.secret = ceph.removeprefix("http://").rstrip("/"), "JETKEY", "JETSECRET"
        else:
            port = free_port()
            self.moto = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.target, self.key, self.secret = f"127.0.0.1:{port}", "bench", "bench"
        self.counters = tempfile.mktemp(suffix=".json")
        self.proxy = subprocess.Popen([sys.executable, "-m", "tests.proxy", "--target", self.target,
                                       "--latency", str(latency), "--counters", self.counters],
                                      stdout=subprocess.PIPE, cwd=REPO)
        self.proxy_port = int(self.proxy.stdout.readline())
        self.options = {"endpoint_url": f"http://127.0.0.1:{self.proxy_port}", "key": self.key,
                        "secret": self.secret}
        for _ in range(100):
            try:
                self.fs().ls("")
                break
            except Exception:
                time.sleep(0.1)

    def fs(self, direct: bool = True):
        import s3fs

        endpoint = f"http://{self.target}" if direct else self.options["endpoint_url"]
        return s3fs.S3FileSystem(endpoint_url=endpoint, key=self.key, secret=self.secret, skip_instance_cache=True)

    def make_bucket(self, name: str) -> None:
        import boto3

        boto3.client("s3", endpoint_url=f"http://{self.target}", aws_access_key_id=self.key,
                     aws_secret_access_key=self.secret, region_name="us-east-1").create_bucket(Bucket=name)

    def upload(self, dataset: Dataset, bucket: str) -> str:
        """A copy of ``dataset`` in a fresh ``bucket`` (as ``ds.zarr``); its URL."""
        fs = self.fs()
        if fs.exists(bucket):
            fs.rm(bucket, recursive=True)
        self.make_bucket(bucket)
        fs.put(dataset.root + "/", f"{bucket}/ds.zarr/", recursive=True)
        return f"s3://{bucket}/ds.zarr"

    def bytes_down(self) -> int:
        time.sleep(0.5)
        return json.loads(Path(self.counters).read_text())["bytes_down"]

    def close(self) -> None:
        self.proxy.kill()
        if self.moto is not None:
            self.moto.kill()


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def section_s3(datasets, configs, args, files) -> None:
    server = f"Ceph RGW at {args.ceph}" if args.ceph else "moto, own process"
    header(f"S3 ({server}) behind a proxy adding latency per request (own process), Zarr")
    dataset = datasets["zarr"]
    total = dataset.manifest.n_jets
    for latency in (0.030, 0.0):
        servers = S3Servers(latency, args.ceph)
        try:
            servers.upload(dataset, "bench")
            for threads in (1, 2):
                local = run_jetstore(dataset.url, configs["weights"], total, threads)
                before = servers.bytes_down()
                s3 = run_jetstore("s3://bench/ds.zarr", configs["weights"], total, threads,
                                  options=servers.options)
                wire = (servers.bytes_down() - before) / (s3["jets"] * 1.5)  # 2 epochs of 3 (warm-up included)
                line(f"local disk, weights, {threads} thread(s)", local)
                ratio = s3["jets"] / s3["wall"] / (local["jets"] / local["wall"])
                line(f"S3 + {latency * 1e3:.0f} ms, weights, {threads} thread(s)", s3,
                     f"{ratio:.2f}× local; {wire:.0f} B/jet on the wire")
            if latency:
                before = servers.bytes_down()
                small = JetDataset("s3://bench/ds.zarr", configs["no weights"], batch_size=BATCH, seed=7,
                                   jets_per_epoch=2048, storage_options=servers.options)
                jets = sum(len(b["_label_"]) for b in small)
                fetched = servers.bytes_down() - before
                print(f"\n2,048-jet epoch (no weights), fresh metadata: {jets} jets, {fetched:,} bytes on the wire = "
                      f"{100 * fetched / dataset.manifest.bytes:.1f}% of the dataset", flush=True)
        finally:
            servers.close()


RANK_SCRIPT = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
from jetstore import JetDataset
from jetstore.sampler.world import World
url, config, jets, options, cache_dir, rank = sys.argv[2], sys.argv[3], int(sys.argv[4]), json.loads(sys.argv[5]), \\
    sys.argv[6], int(sys.argv[7])
ds = JetDataset(url, config, batch_size=512, seed=1, jets_per_epoch=jets, threads=1, storage_options=options,
                cache_dir=cache_dir, world=World(rank, 2))
store = ds.spec.catalog.sources[0].cache.store()
for epoch in (1, 2):
    ds.set_epoch(epoch)
    start, before = time.perf_counter(), store.counters.fetched_bytes
    jets = sum(len(b["_label_"]) for b in ds)
    print(json.dumps({"epoch": epoch, "jets": jets, "wall": time.perf_counter() - start,
                      "fetched": store.counters.fetched_bytes - before}), flush=True)
"""


def cache_epochs(url: str, config, jets: int, epochs: int, servers: S3Servers | None = None,
                 cache_dir: str | None = None) -> list[dict]:
    """Epochs 1..``epochs`` as a fresh process reads them (shard metadata forgotten: the first epoch parses it):
    each epoch's rates and, with ``servers``, its bytes from S3 (through the proxy)."""
    forget_shard_metadata()
    ds = JetDataset(url, config, batch_size=BATCH, seed=1, jets_per_epoch=jets, threads=1,
                    storage_options=servers and servers.options, cache_dir=cache_dir)
    out = []
    for epoch in range(1, epochs + 1):
        ds.set_epoch(epoch)
        before = servers.bytes_down() if servers else 0
        result = measure(ds)
        result["s3"] = servers.bytes_down() - before if servers else 0
        out.append(result)
    return out


def s3_row(label: str, result: dict, reference: dict, stored: int) -> None:
    """A table line of epochs over S3: rates against ``reference`` (local disk), bytes from S3 (of ``stored``)."""
    ratio = result["jets"] / result["wall"] / (reference["jets"] / reference["wall"])
    per_core = result["jets"] / result["cpu"] / (reference["jets"] / reference["cpu"])
    line(label, result, f"{per_core:.2f}× / {ratio:.2f}× local per core / wall; "
                        f"{result['s3'] / 1e6:.1f} MB from S3 = {100 * result['s3'] / stored:.1f}%")


def total(results: list[dict]) -> dict:
    return {key: sum(r[key] for r in results) for key in results[0]}


def section_cache(datasets, configs, args, files) -> None:
    """The node-local cache (cache_dir) over S3 + 30 ms: epochs 1, 2 and 10 of full and 1/10 weighted epochs
    against local disk, bytes from S3 per epoch, and 2 ranks of one node sharing a cache."""
    server = f"Ceph RGW at {args.ceph}" if args.ceph else "moto, own process"
    header(f"node-local cache (cache_dir) over S3 ({server}) + 30 ms per request, Zarr, weights, 1 thread")
    dataset = datasets["zarr"]
    n_jets, stored = dataset.manifest.n_jets, dataset.manifest.bytes
    config = configs["weights"]
    servers = S3Servers(0.030, args.ceph)
    scratch = Path(tempfile.mkdtemp(prefix="jetstore-cache-bench-", dir=args.scratch))
    try:
        url = servers.upload(dataset, "bench")
        cache_epochs(dataset.url, config, n_jets // 10, 1)  # warm up: numba compilation, page cache
        for name, jets in (("full", n_jets), ("1/10", n_jets // 10)):
            local = cache_epochs(dataset.url, config, jets, 4)
            first, later = local[0], total(local[1:])
            line(f"local disk, {name} epoch 1 (shard metadata parsed)", first)
            line(f"local disk, {name} epochs 2-4", later)

            def row(label: str, result: dict, reference: dict) -> None:
                s3_row(label, result, reference, stored)

            plain = cache_epochs(url, config, jets, 2, servers)
            row(f"S3 without cache, {name} epoch 1", plain[0], first)
            row(f"S3 without cache, {name} epoch 2", plain[1], later)
            cached = cache_epochs(url, config, jets, 10, servers, str(scratch / name[-2:]))
            row(f"S3 + cache, {name} epoch 1", cached[0], first)
            row(f"S3 + cache, {name} epoch 2", cached[1], later)
            row(f"S3 + cache, {name} epoch 10", cached[9], later)
            row(f"S3 + cache, {name} epochs 3-10 together", total(cached[2:]), later)
            print(f"\n{name} epochs with the cache, MB from S3 per epoch: "
                  + ", ".join(f"{r['s3'] / 1e6:.1f}" for r in cached) + "\n", flush=True)
        before = servers.bytes_down()
        ranks = [subprocess.Popen([sys.executable, "-c", RANK_SCRIPT, str(REPO), url, args.config, str(n_jets),
                                   json.dumps(servers.options), str(scratch / "ranks"), str(rank)],
                                  stdout=subprocess.PIPE, text=True) for rank in range(2)]
        reports = [[json.loads(text) for text in rank.communicate()[0].splitlines()] for rank in ranks]
        wire = servers.bytes_down() - before
        for epoch in (1, 2):
            fetched = sum(r[epoch - 1]["fetched"] for r in reports)
            walls = "/".join(f"{r[epoch - 1]['wall']:.1f}" for r in reports)
            print(f"2 ranks sharing a cache, full epoch {epoch}: {fetched / 1e6:.1f} MB fetched from S3 by both "
                  f"({100 * fetched / stored:.1f}% of the dataset), rank walls {walls} s", flush=True)
        print(f"2 ranks, both epochs: {wire / 1e6:.1f} MB on the wire (manifests and stats included), the dataset "
              f"{stored / 1e6:.1f} MB", flush=True)
    finally:
        servers.close()
        shutil.rmtree(scratch, ignore_errors=True)


def section_presigned(datasets, configs, args, files) -> None:
    """First epochs over S3 + 30 ms with a fresh cache: ranges through botocore (``JETSTORE_S3_PRESIGNED=0``) and
    through presigned URLs, each beside a local-disk epoch, in turn, ``--presigned-runs`` times; the medians."""
    server = f"Ceph RGW at {args.ceph}" if args.ceph else "moto, own process"
    header(f"first epochs over S3 ({server}) + 30 ms per request with a fresh cache_dir: ranges through botocore "
           "and through presigned URLs, Zarr, weights, 1 thread")
    dataset = datasets["zarr"]
    n_jets, stored = dataset.manifest.n_jets, dataset.manifest.bytes
    config = configs["weights"]
    servers = S3Servers(0.030, args.ceph)
    scratch = Path(tempfile.mkdtemp(prefix="jetstore-presigned-bench-", dir=args.scratch))
    ratios: dict[str, list[tuple[float, float]]] = {}
    try:
        url = servers.upload(dataset, "bench")
        cache_epochs(dataset.url, config, n_jets // 10, 1)  # warm up: numba compilation, page cache
        for name, jets in (("full", n_jets), ("1/10", n_jets // 10)):
            for run in range(1, args.presigned_runs + 1):
                local = cache_epochs(dataset.url, config, jets, 1)[0]
                line(f"local disk, {name} epoch 1, run {run}", local)
                for reads, switch in (("botocore", "0"), ("presigned URLs", "1")):
                    os.environ[presigned.SWITCH] = switch
                    try:
                        result = cache_epochs(url, config, jets, 1, servers, str(scratch / f"{run}{switch}{jets}"))[0]
                    finally:
                        os.environ.pop(presigned.SWITCH)
                    s3_row(f"S3 + cache, {name} epoch 1, {reads}, run {run}", result, local, stored)
                    ratios.setdefault(f"{name} epoch 1, {reads}", []).append(
                        (result["jets"] / result["cpu"] / (local["jets"] / local["cpu"]),
                         result["jets"] / result["wall"] / (local["jets"] / local["wall"])))
    finally:
        servers.close()
        shutil.rmtree(scratch, ignore_errors=True)
    print("\nmedians of the ratios to local disk (per core / wall): " + "; ".join(
        f"{label} {np.median([r[0] for r in values]):.2f}× / {np.median([r[1] for r in values]):.2f}×"
        for label, values in ratios.items()), flush=True)


FRESH_EPOCH = ("import sys, json; from jetstore import JetDataset; from jetstore.config import load_training_config;"
               "ds = JetDataset(sys.argv[1], load_training_config(sys.argv[2]), batch_size=512, seed=7,"
               " jets_per_epoch=int(sys.argv[3]), storage_options=json.loads(sys.argv[4]));"
               "print(sum(len(b['_label_']) for b in ds), ds.last_stream.units_read)")


FRESH_OPEN = ("import sys, json; from jetstore.dataset.dataset import Dataset;"
              "ds = Dataset.open(sys.argv[1], json.loads(sys.argv[2]));"
              "[ds.source.reader(shard) for shard in ds.manifest.shards]")


def section_s3fractions(datasets, configs, args, files) -> None:
    """Weighted epochs that are a fraction of the data, and a 2,048-jet one, each in a fresh process (metadata
    included), on moto through the byte-counting proxy: every byte on the wire per delivered jet."""
    with dask_client(workers=2, quiet=True) as client:
        by_units = ak4_by_units(client, files, args, configs["weights"])
    for dataset in by_units.values():
        s3_fractions(dataset, args)


def s3_fractions(dataset: Dataset, args) -> None:
    """The s3fractions section's table for one dataset."""
    n, stored = dataset.manifest.n_jets, dataset.manifest.bytes
    print(f"\n### weighted epochs over S3 (moto through the byte-counting proxy, fresh process each: metadata "
          f"included), {n:,} jets, {dataset.unit_jets}-jet units, {stored / n:.0f} B/jet stored\n\n| epoch | jets "
          "delivered | units read | bytes on the wire | per delivered jet | share of the dataset |\n"
          "| --- | ---: | ---: | ---: | ---: | ---: |")
    servers = S3Servers(0.0, args.ceph)
    try:
        servers.upload(dataset, "fractions")
        for name, jets in (("1/10", n // 10), ("1/40", n // 40), ("2,048 jets", 2048)):
            s3_epoch(servers, dataset, args.config, name, jets)
        s3_metadata(servers, dataset, "by the chunk index")
        fs = servers.fs()  # the same shards, their comment (the index's pointer) blanked: read by the zip directory
        for shard in dataset.manifest.shards:  # as shards written before the index are
            data = Path(dataset.root, shard.path).read_bytes()
            fs.pipe(f"fractions/ds.zarr/{shard.path}", with_comment(data, b" " * len(directory.comment(data))))
        s3_epoch(servers, dataset, args.config, "2,048 jets, by the zip directory (index pointer blanked)", 2048)
        s3_metadata(servers, dataset, "by the zip directory")
    finally:
        servers.close()
    index_cost(dataset)


def index_cost(dataset: Dataset) -> None:
    """What each shard's chunk index costs the conversion: its bytes against the zip directory's, and the CPU time
    of building it (``chunk_index.build`` on the shard's own entries, best of 5)."""
    print("\nchunk index per shard (stored bytes; CPU to build it, best of 5):")
    total = 0
    for shard in dataset.manifest.shards:
        path = Path(dataset.root, shard.path)
        chunks, keys, key_ids, documents = shard_entries(path)
        seconds = best_of(5, lambda: chunk_index.build(chunks, keys, key_ids, documents), time.process_time)  # noqa: B023
        member, _ = chunk_index.build(chunks, keys, key_ids, documents)
        size = int(member.sizes[0])
        data = path.read_bytes()
        directory_bytes = len(data) - directory.locate(data[-(1 << 16):], len(data) - (1 << 16), len(data))[1]
        total += size
        print(f"  {shard.path}: {shard.n_jets:,} jets, {len(chunks.names):,} chunks: index {size:,} B "
              f"({size / len(chunks.names):.2f} B per chunk), zip directory {directory_bytes:,} B "
              f"({directory_bytes / size:.1f}×); built in {1e3 * seconds:.1f} ms ({1e6 * seconds / shard.n_jets:.2f} "
              "µs per jet)")
    print(f"  in all {total:,} B of {dataset.manifest.bytes:,} stored ({100 * total / dataset.manifest.bytes:.2f}%, "
          f"{total / dataset.manifest.n_jets:.2f} B per jet)", flush=True)


def s3_epoch(servers: S3Servers, dataset: Dataset, config: str, name: str, jets: int) -> dict[str, float]:
    """One weighted epoch of ``jets`` jets of ``dataset`` (on the servers as ``fractions/ds.zarr``) in a fresh
    process: its table row; bytes on the wire per delivered jet over the stored bytes per jet, and over the
    dataset's bytes."""
    n, stored = dataset.manifest.n_jets, dataset.manifest.bytes
    before = servers.bytes_down()
    out = subprocess.run([sys.executable, "-c", FRESH_EPOCH, "s3://fractions/ds.zarr", config, str(jets),
                          json.dumps(servers.options)], capture_output=True, text=True, check=True, cwd=REPO)
    wire = servers.bytes_down() - before
    delivered, units = map(int, out.stdout.split())
    print(f"| {name} | {delivered:,} | {units:,} | {wire:,} | {wire / delivered:,.0f} B = "
          f"{wire / delivered / (stored / n):.2f}× stored | {100 * wire / stored:.2f}% |", flush=True)
    return {"stored": wire / delivered / (stored / n), "share": wire / stored}


def s3_metadata(servers: S3Servers, dataset: Dataset, label: str) -> None:
    """Bytes on the wire to open every shard of ``dataset`` (on the servers as ``fractions/ds.zarr``) in a fresh
    process: the shards' metadata alone."""
    before = servers.bytes_down()
    subprocess.run([sys.executable, "-c", FRESH_OPEN, "s3://fractions/ds.zarr", json.dumps(servers.options)],
                   check=True, cwd=REPO)
    wire = servers.bytes_down() - before
    shards = len(dataset.manifest.shards)
    print(f"| metadata of the {shards} shards, {label} | | | {wire:,} | {wire // shards:,} B per shard | "
          f"{100 * wire / dataset.manifest.bytes:.2f}% |", flush=True)


def section_jetclass(datasets, configs, args, files) -> None:
    header("JetClass-style jets (~45 particles, 128-particle inputs), 4 one-class files × 5,000 jets, Zarr")
    directory = Path(args.scratch) / "jetclass"
    inputs = jetclass_files(directory)
    config = training_config_from_dict(yaml.safe_load((REPO / "tests/fixtures/weaver_jetclass.yaml").read_text()))
    with dask_client(workers=2, quiet=True) as client:
        dataset = build(client, inputs, str(directory / "ds.zarr"), "zarr", "jetclass", [config])
    for threads in (1, 2):
        result = run_jetstore(dataset.url, config, dataset.manifest.n_jets, threads)
        line(f"jetstore JetClass-style, weights, {threads} thread(s)", result,
             f"{dataset.manifest.bytes / dataset.manifest.n_jets:.0f} B/jet stored")


def jetclass_files(directory: Path) -> list[str]:
    """Four one-class JetClass-style files of 5,000 jets in ``directory`` (made once)."""
    directory.mkdir(parents=True, exist_ok=True)
    inputs = []
    for seed, label in enumerate(("label_QCD", "label_Hbb", "label_Hcc", "label_Wqq"), start=1):
        path = directory / f"{label}.root"
        if not path.exists():
            subprocess.run([sys.executable, str(REPO / "tests/fixtures/make_sample.py"), "jetclass", str(path),
                            "--jets", "5000", "--seed", str(seed), "--label", label], check=True, capture_output=True)
        inputs.append(str(path))
    return inputs


def section_natural(datasets, configs, args, files) -> None:
    header("natural epochs (weights, no jets_per_epoch) on a held-out dataset, batch 512")
    held_out = [f for f in files if Path(f).name in ("ttbar_2.root", "qcd30_1.root", "wjets_1.root")][:2]
    options = yaml.safe_load(Path(args.config).read_text())
    config = configs["weights"]
    with dask_client(workers=2, quiet=True) as client:
        dataset = build(client, held_out, str(Path(args.scratch) / "heldout.zarr"), "zarr", "cms_ak4", [config])
    stats = read_stats(dataset, config.hash)
    spec = config.weights
    target = np.stack([stats.class_hists[c] * stats.weight_tables[c] for c in spec.classes])
    ds = JetDataset(dataset.url, config, batch_size=BATCH, seed=1, observers=True)
    list(ds)
    hist = np.zeros_like(target)
    starts, jets, wall, cpu = [], 0, time.perf_counter(), cpu_seconds()
    for epoch in range(1, args.natural_epochs + 1):
        ds.set_epoch(epoch)
        begin = time.perf_counter()
        len(ds)
        ds.scheme.plan(ds.spec.units, ds._params(ds.world or __import__("jetstore").sampler.World()), 0, 0)
        starts.append(time.perf_counter() - begin)
        for batch in ds:
            labels = batch["_label_"].numpy()
            jets += len(labels)
            for c in range(len(spec.classes)):
                mine = labels == c
                hist[c] += np.histogram2d(batch["jet_pt"].numpy()[mine], batch["jet_eta"].numpy()[mine],
                                          bins=[spec.x_bins, spec.y_bins])[0]
    result = {"jets": jets, "wall": time.perf_counter() - wall, "cpu": cpu_seconds() - cpu}
    variation = 0.5 * np.abs(hist / hist.sum() - target / target.sum()).sum()
    natural = float(ds.spec.units.expected.sum())
    line(f"jetstore, {dataset.manifest.n_jets:,} jets, natural epoch {natural:.0f} weighted jets, {len(ds)} batch(es)",
         result, f"epoch start {1e3 * np.median(starts):.1f} ms; (class, pT, eta) mix {variation:.3f} TV over "
                 f"{args.natural_epochs} epochs")
    weaver, init = run_weaver(held_out, options, 0, args.weaver_seconds)
    line(f"weaver-core, same files, 0 workers (init {init:.0f} s)", weaver)


def section_memory(datasets, configs, args, files) -> None:
    header("peak RSS of one process reading a 135,832-jet epoch (weights, 2 threads), 100k-jet shards",
           "peak RSS MB | jets/s wall | dataset")
    base = Path(args.scratch)
    with dask_client(workers=2, quiet=True) as client:
        for factor in (1, 10):
            inputs = copies_of(files, 4 * factor, base / f"inputs{factor}x")
            url = str(base / f"mem{factor}x.zarr")
            dataset = build(client, inputs, url, "zarr", "cms_ak4", [configs["weights"]])
            # VmHWM, not ru_maxrss: Linux carries a forking parent's peak into the child's ru_maxrss across exec
            script = ("import sys, time, re; sys.path.insert(0, sys.argv[1]);"
                      "from jetstore import JetDataset; from jetstore.config import load_training_config;"
                      "ds = JetDataset(sys.argv[2], load_training_config(sys.argv[3]), batch_size=512, seed=1,"
                      " jets_per_epoch=135832, threads=2); t = time.perf_counter();"
                      " n = sum(len(b['_label_']) for b in ds); rate = n / (time.perf_counter() - t);"
                      "hwm = re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1);"
                      "print(int(hwm) / 1024, rate)")
            out = subprocess.run([sys.executable, "-c", script, str(REPO), dataset.url, args.config],
                                 capture_output=True, text=True, check=True).stdout.split()
            size = f"{factor}× ({dataset.manifest.n_jets:,} jets, {len(dataset.manifest.shards)} shards)"
            stored = dataset.manifest.bytes / 2**20
            print(f"| {size} | {float(out[0]):,.0f} | {float(out[1]):,.0f} | {stored:,.0f} MiB |", flush=True)


def epoch_stats(url, config, jets_per_epoch, epochs=2, options=None, threads=1) -> dict:
    """Warm epoch 0, then ``epochs`` measured epochs: per-core rate, bytes fetched per delivered jet, the (class, pT,
    eta) mix, the most copies of one jet in an epoch, repeats within 1 / 4 batches and units per batch."""
    ds = JetDataset(url, config, batch_size=BATCH, seed=1, jets_per_epoch=jets_per_epoch, threads=threads,
                    observers=True, storage_options=options)
    for _ in ds:
        pass
    spec = config.weights
    mix = np.zeros((len(spec.classes), len(spec.x_bins) - 1, len(spec.y_bins) - 1))
    jets = fetched = 0
    wall, cpu = time.perf_counter(), cpu_seconds()
    keys, copies, units = [], 0, []
    for epoch in range(1, epochs + 1):
        ds.set_epoch(epoch)
        epoch_keys = []
        for batch in ds:
            labels = batch["_label_"].numpy()
            jets += len(labels)
            pt, eta = batch["jet_pt"].numpy(), batch["jet_eta"].numpy()
            for c in range(len(spec.classes)):
                mine = labels == c
                mix[c] += np.histogram2d(pt[mine], eta[mine], bins=[spec.x_bins, spec.y_bins])[0]
            epoch_keys.append(jet_keys(batch))
        fetched += ds.last_stream.bytes_read
        units += ds.last_stream.units_per_batch
        flat = np.concatenate(epoch_keys)
        copies = max(copies, int(np.unique(flat, return_counts=True)[1].max()))
        keys += epoch_keys
    result = {"jets": jets, "wall": time.perf_counter() - wall, "cpu": cpu_seconds() - cpu}
    stats = read_stats(ds.plan.collection, config.hash)
    target = np.stack([stats.class_hists[c] * stats.weight_tables[c] for c in spec.classes])
    result.update(bytes=fetched / jets, variation=0.5 * np.abs(mix / mix.sum() - target / target.sum()).sum(),
                  copies=copies, repeats=(repeats(keys, 1), repeats(keys, 4)), units=float(np.mean(units)),
                  units_read=ds.last_stream.units_read, batches=len(keys) // epochs)
    return result


def iid_reference(dataset: Dataset, config, jets: int) -> dict:
    """The same measures for two epochs of an i.i.d. draw (with replacement, in proportion to weaver's weights)
    of ``jets`` jets in batches: repeats within 1 / 4 batches, distinct units per batch, and the (class, pT, eta)
    mix's total variation from the target (the noise floor of a sample that size)."""
    weights, cells = jet_weights(dataset, config)
    unit = np.concatenate([index * 10**6 + np.arange(shard.n_jets) // dataset.unit_jets
                           for index, shard in enumerate(dataset.manifest.shards)])
    draws = np.random.default_rng(1).choice(len(weights), size=2 * (jets - jets % BATCH), p=weights / weights.sum())
    batches = list(draws.reshape(-1, BATCH))
    n_cells = config.cell_rule().n_cells
    target = np.bincount(cells[cells >= 0], weights=weights[cells >= 0], minlength=n_cells)
    drawn = np.bincount(cells[draws], minlength=n_cells)
    return {"repeats": (repeats(batches, 1), repeats(batches, 4)),
            "units": float(np.mean([len(np.unique(unit[b])) for b in batches])),
            "variation": 0.5 * np.abs(drawn / drawn.sum() - target / target.sum()).sum()}


def first_batch_seconds(url: str, config_path: str, jets_per_epoch: int) -> tuple[float, float]:
    """A fresh process: seconds from ``JetDataset(...)`` to its construction, and to the first batch."""
    script = ("import sys, time; sys.path.insert(0, sys.argv[1]); from jetstore import JetDataset;"
              "t = time.perf_counter(); ds = JetDataset(sys.argv[2], sys.argv[3], batch_size=512, seed=1,"
              " jets_per_epoch=int(sys.argv[4])); built = time.perf_counter() - t; next(iter(ds));"
              "print(built, time.perf_counter() - t)")
    out = subprocess.run([sys.executable, "-c", script, str(REPO), url, config_path, str(jets_per_epoch)],
                         capture_output=True, text=True, check=True).stdout.split()
    return float(out[0]), float(out[1])


def build_jittered(client, files: list[str], copies: int, scratch: Path, name: str, config, fmt: str = "zarr",
                   **convert_options) -> Dataset:
    """``copies`` jittered copies of ``files`` (distinct jets, one small Parquet file per copy and input) converted
    with the defaults (small files packed into 100k-jet shards, 256-jet units) or ``convert_options``."""
    inputs = jittered_copies(files, scratch / f"jittered{copies}", copies)
    url = str(scratch / f"{name}.{fmt}")
    if not Path(url, "_manifest.json").exists():
        start = time.perf_counter()
        report = convert(inputs, load_schema("cms_ak4"), url, format=fmt, client=client, progress=False,
                         **convert_options)
        CONVERT_SECONDS[url] = time.perf_counter() - start
        assert report.ok, report.failures
    return build(client, inputs, url, fmt, "cms_ak4", [config])


def ak4_by_units(client, files: list[str], args, config) -> dict[int, Dataset]:
    """The jittered cms_ak4 dataset of the first ``--fraction-copies`` size, once per ``--chunk-jets`` unit size."""
    copies = int(args.fraction_copies.split(",")[0])
    return {jets: build_jittered(client, files, copies, Path(args.scratch), ak4_name(copies, jets), config,
                                 layout=Layout(jets))
            for jets in args.chunk_jets}


def ak4_name(copies: int, jets: int) -> str:
    """The scratch name of ``copies`` jittered copies of cms_ak4 in ``jets``-jet units: ``frac{copies}x`` with the
    default units, ``frac{copies}x_u{jets}`` with others."""
    return f"frac{copies}x" if jets == Layout().chunk_jets else f"frac{copies}x_u{jets}"


def startup(built, config_path: str) -> None:
    print("\nfrom JetDataset(...) to the first batch, fresh process (1/10 epoch):")
    for dataset in built:
        construct, first = first_batch_seconds(dataset.url, config_path, dataset.manifest.n_jets // 10)
        print(f"  {dataset.manifest.n_jets:,} jets, {len(dataset.manifest.shards)} shards: built {construct:.2f} s, "
              f"first batch {first:.2f} s", flush=True)


def section_startup(datasets, configs, args, files) -> None:
    """The fractions section's start-up times alone, on its datasets (built if missing)."""
    with dask_client(workers=2, quiet=True) as client:
        built = [build_jittered(client, files, int(c), Path(args.scratch), f"frac{c}x", configs["weights"])
                 for c in args.fraction_copies.split(",")]
    startup(built, args.config)


def fraction_rows(dataset: Dataset, config, label: str, fractions=(1.0, 0.1, 0.025)) -> None:
    """A full, a 1/10 and a 1/40 weighted epoch of ``dataset``: one table row each."""
    n = dataset.manifest.n_jets
    stored = dataset.manifest.bytes / n
    full = None
    for fraction in fractions:
        result = epoch_stats(dataset.url, config, int(fraction * n) if fraction else 2048)
        rate = result["jets"] / result["cpu"]
        full = full or rate
        name = {1.0: "full epoch", 0.1: "1/10", 0.025: "1/40", None: "2,048 jets"}.get(fraction, str(fraction))
        line(f"{label}: {name}", result,
             f"{result['bytes']:.0f} B = {result['bytes'] / stored:.2f}× stored ({rate / full:.2f}× full rate) | "
             f"{result['variation']:.3f} | {result['copies']} | {result['repeats'][0]:.3f} / "
             f"{result['repeats'][1]:.3f} | {result['units']:.0f} ({result['units_read']})")


def section_fractions(datasets, configs, args, files) -> None:
    """Issue #18: weighted epochs that are 1/10 and 1/40 of the data, at three sizes, against a full epoch."""
    config = configs["weights"]
    scratch = Path(args.scratch)
    sizes = [int(c) for c in args.fraction_copies.split(",")]
    header("weighted epochs, a fraction of the data (weights on, batch 512, 1 thread, local Zarr, jittered copies of "
           "cms_ak4 in small files packed into 100k-jet shards of 256-jet units)",
           "jets/s per core | jets/s wall | fetched per delivered jet | mix TV | copies | repeats 1 / 4 batches | "
           "units per batch (read)")
    with dask_client(workers=2, quiet=True) as client:
        built = {c: build_jittered(client, files, c, scratch, f"frac{c}x", config) for c in sizes}
        layouts = {
            "2,048-jet units, a shard per input file (before)":
                build_jittered(client, files, sizes[0], scratch, "before", config, jets_per_shard=7000,
                               layout=Layout(2048)),
            "Parquet": build_jittered(client, files, sizes[0], scratch, "frac_parquet", config, fmt="parquet"),
            "a shard per small input file (jets_per_shard 7,000)":
                build_jittered(client, files, sizes[0], scratch, "small_shards", config, jets_per_shard=7000),
        }

    for dataset in built.values():
        fraction_rows(dataset, config, f"{dataset.manifest.n_jets:,} jets, {len(dataset.manifest.shards)} shards")
    for label, dataset in layouts.items():
        fraction_rows(dataset, config, f"{dataset.manifest.n_jets:,} jets, {label}")
    base = built[sizes[0]]
    n = base.manifest.n_jets
    print("\ni.i.d. draws of the same sizes (with replacement, in proportion to the weights) on the smallest dataset:")
    for fraction in (0.1, 0.025):
        reference = iid_reference(base, config, int(fraction * n))
        print(f"  {fraction}: repeats {reference['repeats'][0]:.3f} / {reference['repeats'][1]:.3f}, "
              f"{reference['units']:.0f} units per batch, mix TV {reference['variation']:.3f}", flush=True)
    startup(built.values(), args.config)
    print("\n2,048-jet weighted epoch, fetched share of the dataset:")
    for dataset in built.values():
        ds = JetDataset(dataset.url, config, batch_size=BATCH, seed=7, jets_per_epoch=2048)
        jets = sum(len(b["_label_"]) for b in ds)
        print(f"  {dataset.manifest.n_jets:,} jets: {jets} jets, {ds.last_stream.bytes_read:,} bytes = "
              f"{100 * ds.last_stream.bytes_read / dataset.manifest.bytes:.2f}% of the dataset", flush=True)


def mix_row(url: str, config, jets_per_epoch: int | None, seeds: int, epochs: int,
            read_factor: float | str = 1.0) -> dict:
    """Per-epoch (class, pT, eta) total variation from weaver's target, against an i.i.d. draw of the same size, over
    ``seeds`` × ``epochs`` epochs; the worst cell after ``epochs`` epochs in units of an i.i.d. draw's sigma (the
    largest over the seeds) against the same for i.i.d. draws of that size; stored bytes read per delivered jet."""
    dataset = Dataset.open(url)
    target = target_of(dataset, config)
    per_epoch, pulls, jets, fetched, delivered = [], [], 0, 0, 0
    for seed in range(seeds):
        ds = JetDataset(url, config, batch_size=BATCH, seed=seed, jets_per_epoch=jets_per_epoch, observers=True,
                        read_factor=read_factor)
        total = np.zeros_like(target)
        for epoch in range(epochs):
            ds.set_epoch(epoch)
            counts = histogram(ds, config)
            per_epoch.append(variation(counts, target))
            total += counts
            fetched += ds.last_stream.bytes_read
        jets = int(counts.sum())
        delivered += int(total.sum())
        pulls.append(worst_pull(total, target))
    share = (target / target.sum()).ravel()
    rng = np.random.default_rng(seeds)
    iid_pulls = [worst_pull(rng.multinomial(int(total.sum()), share), target) for _ in range(seeds)]
    return {"jets": jets, "tv": float(np.mean(per_epoch)), "iid": iid_variation(target, jets, 32),
            "pull": max(pulls), "iid_pull": max(iid_pulls),
            "bytes": fetched / delivered / (dataset.manifest.bytes / dataset.manifest.n_jets)}


def section_mix(datasets, configs, args, files) -> None:
    """Issue #34: how close each epoch is to weaver's target, against an i.i.d. draw of its size."""
    print(f"\n### per-epoch (class, pT, eta) mix against an i.i.d. draw of the same size ({args.mix_seeds} seeds × "
          f"{args.mix_epochs} epochs, local Zarr)\n\n| data | epoch | read_factor | jets | TV | i.i.d. TV | × i.i.d. | "
          f"worst cell after {args.mix_epochs} epochs (σ) | i.i.d. worst (σ) | fetched per delivered jet |\n"
          "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    with dask_client(workers=2, quiet=True) as client:
        by_units = ak4_by_units(client, files, args, configs["weights"])
    oneclass, oneclass_config, _ = oneclass_dataset(datasets, configs, args, files)
    for label, dataset, config in (*((f"cms_ak4 jittered, {jets}-jet units", ak4, configs["weights"])
                                     for jets, ak4 in by_units.items()),
                                   ("one class per file", oneclass, oneclass_config)):
        n = dataset.manifest.n_jets
        for name, jets in (("1/40", n // 40), ("1/10", n // 10), ("natural", None), ("full", n)):
            epochs = args.mix_epochs if name != "full" else min(args.mix_epochs, 4)
            tried = args.mix_read_factors if name in ("1/40", "natural") else [f for f in args.mix_read_factors
                                                                             if f == "auto" and name != "full"]
            for factor in [1.0, *tried]:
                row = mix_row(dataset.url, config, jets, args.mix_seeds, epochs, factor)
                shown = factor if factor == "auto" else f"{factor:g}"
                print(f"| {label} ({n:,} jets) | {name} | {shown} | {row['jets']:,} | {row['tv']:.4f} | "
                      f"{row['iid']:.4f} | {row['tv'] / row['iid']:.2f} | {row['pull']:.1f} (after {epochs}) | "
                      f"{row['iid_pull']:.1f} | {row['bytes']:.2f}× stored |", flush=True)


def section_units(datasets, configs, args, files) -> None:
    """Issue #34: what smaller units buy. The jittered cms_ak4 dataset converted once per ``--chunk-jets`` unit size
    (afresh, timed), then side by side, each measure over every unit size in turn: convert wall time and stored
    bytes per jet; per-core rates and bytes fetched per delivered jet of full, 1/10 and 1/40 weighted epochs (local,
    1 thread); per-epoch (class, pT, eta) TV against an i.i.d. draw at 1/40, 1/10, natural and full epochs
    (``--mix-seeds`` × ``--mix-epochs``, full epochs at most 2); every byte over S3 of a 1/40 and a 2,048-jet
    epoch, each in a fresh process."""
    config = configs["weights"]
    copies = int(args.fraction_copies.split(",")[0])
    for jets in args.chunk_jets:  # converted in this run, so that each conversion is timed
        shutil.rmtree(Path(args.scratch, f"{ak4_name(copies, jets)}.zarr"), ignore_errors=True)
    with dask_client(workers=2, quiet=True) as client:
        by_units = ak4_by_units(client, files, args, config)
    rows: dict[int, dict[str, Any]] = {jets: {} for jets in by_units}
    for jets, dataset in by_units.items():
        n = dataset.manifest.n_jets
        rows[jets].update(convert=CONVERT_SECONDS.get(dataset.url, float("nan")), stored=dataset.manifest.bytes / n)
    for name, fraction in (("full", 1.0), ("1/10", 0.1), ("1/40", 0.025)):
        for jets, dataset in by_units.items():
            n = dataset.manifest.n_jets
            result = epoch_stats(dataset.url, config, int(fraction * n))
            rows[jets][f"rate {name}"] = result["jets"] / result["cpu"]
            rows[jets][f"bytes {name}"] = result["bytes"] / rows[jets]["stored"]
            print(f"  {jets}-jet units, {name}: {result['jets'] / result['cpu']:,.0f} jets/s per core, "
                  f"{result['bytes'] / rows[jets]['stored']:.2f}× stored, {result['units_read']} units read",
                  flush=True)
    for name in ("1/40", "1/10", "natural", "full"):
        for jets, dataset in by_units.items():
            n = dataset.manifest.n_jets
            size = {"1/40": n // 40, "1/10": n // 10, "natural": None, "full": n}[name]
            row = mix_row(dataset.url, config, size, args.mix_seeds,
                          args.mix_epochs if name != "full" else min(args.mix_epochs, 2))
            rows[jets][f"tv {name}"] = f"{row['tv'] / row['iid']:.2f} ({row['tv']:.3f} / {row['iid']:.3f})"
            print(f"  {jets}-jet units, {name}: TV {row['tv']:.4f}, i.i.d. {row['iid']:.4f}, "
                  f"{row['tv'] / row['iid']:.2f}×, worst cell {row['pull']:.1f}σ (i.i.d. {row['iid_pull']:.1f}σ)",
                  flush=True)
    servers = S3Servers(0.0, args.ceph)
    try:
        for jets, dataset in by_units.items():
            n = dataset.manifest.n_jets
            servers.upload(dataset, "fractions")
            rows[jets]["s3 1/40"] = s3_epoch(servers, dataset, args.config, f"{jets} jets: 1/40", n // 40)["stored"]
            rows[jets]["s3 2048"] = s3_epoch(servers, dataset, args.config, f"{jets} jets: 2,048", 2048)["share"]
            s3_metadata(servers, dataset, f"{jets}-jet units")
    finally:
        servers.close()
    print(f"\n### unit size, side by side ({copies} jittered copies of cms_ak4, local Zarr, 1 thread)\n\n"
          "| jets per unit | convert (s, wall) | stored B/jet | full jets/s per core | 1/10 (× full) | 1/40 (× full) | "
          "fetched per delivered jet 1/10 / 1/40 (local) | S3 1/40, every byte | S3 2,048-jet epoch | TV × i.i.d. "
          "1/40 | 1/10 | natural | full |\n| ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | --- | --- "
          "| --- | --- |")
    for jets, row in rows.items():
        full = row["rate full"]
        print(f"| {jets} | {row['convert']:.1f} | {row['stored']:.0f} | {full:,.0f} | "
              f"{row['rate 1/10']:,.0f} ({row['rate 1/10'] / full:.2f}×) | "
              f"{row['rate 1/40']:,.0f} ({row['rate 1/40'] / full:.2f}×) | "
              f"{row['bytes 1/10']:.2f}× / {row['bytes 1/40']:.2f}× ({row['bytes 1/40'] * row['stored']:,.0f} B) | "
              f"{row['s3 1/40']:.2f}× ({row['s3 1/40'] * row['stored']:,.0f} B) | "
              f"{100 * row['s3 2048']:.2f}% | {row['tv 1/40']} | {row['tv 1/10']} | {row['tv natural']} | "
              f"{row['tv full']} |", flush=True)


def oneclass_dataset(datasets, configs, args, files):
    """Held-out-style data, one class per input file: 10 jittered copies of the four one-class JetClass-style files,
    converted with the defaults; its config and number of inputs."""
    directory = Path(args.scratch) / "jetclass"
    inputs = jittered_copies(jetclass_files(directory), directory / "jittered10", 10, tree="tree")
    config = training_config_from_dict(yaml.safe_load((REPO / "tests/fixtures/weaver_jetclass.yaml").read_text()))
    with dask_client(workers=2, quiet=True) as client:
        dataset = build(client, inputs, str(directory / "oneclass.zarr"), "zarr", "jetclass", [config])
    return dataset, config, len(inputs)


def section_oneclass(datasets, configs, args, files) -> None:
    """Held-out-style data, one class per input file: jittered copies of the JetClass-style files, weighted epochs
    that are a fraction of the data."""
    header("weighted epochs, a fraction of the data, one class per input file (JetClass-style, 10 jittered copies "
           "of 4 one-class files, 1 thread, local Zarr)",
           "jets/s per core | jets/s wall | fetched per delivered jet | mix TV | copies | repeats 1 / 4 batches | "
           "units per batch (read)")
    dataset, config, inputs = oneclass_dataset(datasets, configs, args, files)
    fraction_rows(dataset, config, f"{dataset.manifest.n_jets:,} jets, {inputs} one-class files")


PROFILE_CHILD = ("import sys, time; from jetstore import JetDataset; from jetstore.config import load_training_config;"
                 "ds = JetDataset(sys.argv[1], load_training_config(sys.argv[2]), batch_size=512, seed=1,"
                 " jets_per_epoch=int(sys.argv[3]), threads=int(sys.argv[4])); list(ds); print('ready', flush=True);"
                 "end = time.perf_counter() + float(sys.argv[5]); epoch = 0\n"
                 "while time.perf_counter() < end:\n epoch += 1; ds.set_epoch(epoch); list(ds)")
PROFILE_GROUPS = {  # what a sample is spent on: the first of these functions found in its stack, innermost first
    "chunk decoding (Zarr: CRC + Blosc)": ("decode_chunks",),
    "Parquet page decoding (pyarrow)": ("read_row_groups",),
    "batch assembly (pad, standardise)": ("assemble",),
    "arena: moving / copying prepared rows": ("_move", "_reallocate", "write"),
    "preparing variables (builder.prepare)": ("prepare",),
    "keeping rows (selection, cells, multiplicities)": ("_kept", "keep"),
    "decode bookkeeping (tables, checks)": ("decode", "decode_window", "_table"),
    "file reads": ("fetch", "_fetch"),
    "pools and batch cutting": ("next_batch", "release", "_cut", "draw", "add"),
}


def profile_summary(raw: Path) -> tuple[int, dict[str, float], list[tuple[str, float]]]:
    """Samples of a py-spy raw file: their total, the share of each of :data:`PROFILE_GROUPS`, the top functions by
    own (innermost-frame) share."""
    groups: dict[str, int] = dict.fromkeys([*PROFILE_GROUPS, "other"], 0)
    own: dict[str, int] = {}
    total = 0
    for row in raw.read_text(errors="replace").splitlines():  # (--nonblocking: a name may be read torn)
        stack, _, count = row.rpartition(" ")
        if not count.isdigit():  # (a frame's name holding a line break splits its row)
            continue
        frames = [frame.split(" (")[0].rsplit(".", 1)[-1] for frame in stack.split(";")]  # (py-spy ≥ 0.4: Class.f)
        n = int(count)
        total += n
        own[frames[-1]] = own.get(frames[-1], 0) + n
        found = next((name for frame in reversed(frames) for name, functions in PROFILE_GROUPS.items()
                      if frame in functions), "other")
        groups[found] += n
    top = sorted(own.items(), key=lambda item: -item[1])[:8]
    return total, {k: v / max(total, 1) for k, v in groups.items()}, [(k, v / max(total, 1)) for k, v in top]


def section_profile(datasets, configs, args, files) -> None:
    """py-spy on a fresh process reading full weighted epochs (local Zarr, jittered cms_ak4) after a warm one: every
    active thread's samples, then only those holding the GIL (the part threads cannot share)."""
    with dask_client(workers=2, quiet=True) as client:
        by_units = ak4_by_units(client, files, args, configs["weights"])
    for dataset in by_units.values():
        profile(dataset, args)


def profile(dataset: Dataset, args) -> None:
    """The profile section's tables for one dataset."""
    spy = Path(sys.executable).with_name("py-spy")
    for threads in (1, 2):
        child = subprocess.Popen([sys.executable, "-c", PROFILE_CHILD, dataset.url, args.config,
                                  str(dataset.manifest.n_jets), str(threads), str(2 * args.profile_seconds + 5)],
                                 stdout=subprocess.PIPE, text=True, cwd=REPO)
        child.stdout.readline()
        results = {}
        for kind, flags in (("all threads", []), ("holding the GIL", ["--gil"])):
            raw = Path(tempfile.mktemp(suffix=".txt"))
            subprocess.run([str(spy), "record", "-p", str(child.pid), "-d", str(int(args.profile_seconds)), "-r", "100",
                            "-f", "raw", "--nolineno", "--nonblocking", "-o", str(raw), *flags],
                           check=True, capture_output=True)
            results[kind] = profile_summary(raw)
        child.kill()
        child.wait()
        every, gil = results["all threads"], results["holding the GIL"]
        print(f"\n### py-spy, full weighted epochs of {dataset.manifest.n_jets:,} jets ({dataset.unit_jets}-jet "
              f"units), {threads} thread(s), {args.profile_seconds} s each\n\n| | share of active samples "
              f"({every[0]:,}) | share of GIL-holding samples ({gil[0]:,}) |\n| --- | ---: | ---: |")
        for name in every[1]:
            print(f"| {name} | {100 * every[1][name]:.0f}% | {100 * gil[1][name]:.0f}% |")
        print(f"| **GIL held / active** | | **{gil[0] / max(every[0], 1):.2f}** |")
        print("top functions by own samples (all threads): " +
              ", ".join(f"{name} {100 * share:.0f}%" for name, share in every[2]), flush=True)


def section_plans(datasets, configs, args, files) -> None:
    """The Zarr read plans of the sampler's units (the weighted config's columns): µs of one process per unit,
    planned one at a time (``plan``) and a window's units of one shard together (``plan_units``, as the sampler
    does), windows of 10 random units (a window's share of a shard on few shards) and of 1 (on datasets of many
    shards, a window reads ~1 unit per shard), best of 5, for every ``--chunk-jets`` unit size."""
    config = configs["weights"]
    with dask_client(workers=2, quiet=True) as client:
        by_units = ak4_by_units(client, files, args, config)
    for jets, dataset in by_units.items():
        stats = read_stats(dataset, config.hash)
        selection = BatchBuilder(dataset.schema, config, {n: (v.center, v.scale) for n, v in
                                                          stats.variables.items()}).needs
        shard = dataset.manifest.shards[0]
        reader = dataset.source.reader(shard)
        starts = np.random.default_rng(0).permutation(np.arange(0, shard.n_jets - jets + 1, jets)).tolist()
        times = {}
        for size in (10, 1):
            windows = [[(a, a + jets) for a in starts[i:i + size]] for i in range(0, len(starts), size)]
            times.update({f"{name}, windows of {size}": seconds
                          for name, seconds in plan_times(reader, selection, windows, alone=size == 10).items()})
        arrays = len(selection.jets) + sum(1 + len(f) for f in selection.blocks.values())
        print(f"  {jets}-jet units, {arrays} arrays, µs per unit (per jet): " +
              ", ".join(f"{name} {1e6 * seconds:.1f} ({1e6 * seconds / jets:.2f})" for name, seconds in times.items()),
              flush=True)


def plan_times(reader, selection, windows: list[list[tuple[int, int]]], alone: bool = True) -> dict[str, float]:
    """Seconds per unit to plan ``windows`` of units one plan at a time (where ``alone``) and together, best of 5."""
    ways = {"one at a time": lambda window: [reader.plan(a, b, selection) for a, b in window],
            "together": lambda window: reader.plan_units(window, selection)}
    times = {}
    for name, plan in ways.items():
        if name == "one at a time" and not alone:
            continue
        best = []
        for _ in range(5):
            start = time.perf_counter()
            for window in windows:
                plan(window)
            best.append((time.perf_counter() - start) / sum(map(len, windows)))
        times[name] = min(best)
    return times


SECTIONS = {"mix": section_mix, "units": section_units, "fractions": section_fractions,
            "s3fractions": section_s3fractions, "startup": section_startup, "local": section_local,
            "weaver": section_weaver, "s3": section_s3, "cache": section_cache, "presigned": section_presigned,
            "jetclass": section_jetclass, "oneclass": section_oneclass, "natural": section_natural,
            "memory": section_memory, "profile": section_profile, "plans": section_plans}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inputs", default=str(SHARED / "data/cms_ak4/*.root"))
    parser.add_argument("--config", default=str(SHARED / "bench/weaver_cms_ak4.yaml"))
    parser.add_argument("--copies", type=int, default=4)
    parser.add_argument("--scratch", default=str(REPO / "bench/out/sampler"))
    parser.add_argument("--sections", default=",".join(SECTIONS))
    parser.add_argument("--weaver-seconds", type=float, default=60.0)
    parser.add_argument("--natural-epochs", type=int, default=20)
    parser.add_argument("--fraction-copies", default="8,80,296",
                        help="dataset sizes of the fractions section, in jittered copies of the inputs (34k jets each)")
    parser.add_argument("--mix-seeds", type=int, default=3, help="seeds of the mix section")
    parser.add_argument("--mix-epochs", type=int, default=10, help="epochs per seed of the mix section")
    parser.add_argument("--mix-read-factors", default=[2.0, 4.0, "auto"],
                        type=lambda text: [f if f == "auto" else float(f) for f in text.split(",")],
                        help="read_factor values also tried at 1/40 and natural epochs in the mix section (auto: at "
                             "1/10 too; at full epochs it reads no more)")
    parser.add_argument("--chunk-jets", default=[Layout().chunk_jets],
                        type=lambda text: [int(jets) for jets in text.split(",")],
                        help="jets per unit (convert's --chunk-jets) of the jittered cms_ak4 datasets of the mix, "
                             "s3fractions, profile and units sections, one dataset each, side by side (default 256)")
    parser.add_argument("--profile-seconds", type=int, default=20.0, help="py-spy's duration in the profile section")
    parser.add_argument("--presigned-runs", type=int, default=3, help="runs of each first epoch, presigned section")
    parser.add_argument("--ceph", metavar="URL", help="the s3 section against this running Ceph RGW (tests/ceph/rgw.sh "
                                                      "start DIR prints it) instead of moto")
    args = parser.parse_args()
    torch.set_num_threads(1)
    files = sorted(glob.glob(args.inputs))
    if not files:
        sys.exit(f"no input matches {args.inputs}")
    options = yaml.safe_load(Path(args.config).read_text())
    unweighted = copy.deepcopy(options)
    unweighted.pop("weights")
    configs = {"weights": training_config_from_dict(options), "no weights": training_config_from_dict(unweighted)}
    scratch = Path(args.scratch)
    inputs = jittered_copies(files, scratch / f"jittered{args.copies}", args.copies)
    datasets = {}
    with dask_client(workers=2, quiet=True) as client:
        for fmt in ("zarr", "parquet"):
            datasets[fmt] = build(client, inputs, str(scratch / f"ak4.{fmt}"), fmt, "cms_ak4", configs.values())
    print(f"{len(inputs)} input files, {datasets['zarr'].manifest.n_jets:,} jets; torch {torch.__version__}, "
          f"{os.cpu_count()} cores; {time.strftime('%Y-%m-%d')}", flush=True)
    for name in args.sections.split(","):
        own = name in ("natural", "fractions", "startup", "mix", "units", "s3fractions", "profile", "plans")
        SECTIONS[name](datasets, configs, args, files if own else inputs)


if __name__ == "__main__":
    main()
