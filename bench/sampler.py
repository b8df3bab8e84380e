"""Benchmark the streaming sampler against weaver-core's loader and the raw decode + pad limit.

    python bench/sampler.py [--inputs '../shared/data/cms_ak4/*.root'] [--config ../shared/bench/weaver_cms_ak4.yaml]

One command, side by side, on ../shared/data/cms_ak4 converted to Zarr and Parquet, with the config's
``weights`` block (class-balanced, pT-eta-flat sampling) and without it:
  * jetstore ``JetDataset`` through a torch DataLoader with 0 and 2 workers;
  * weaver-core 0.5.3 ``SimpleIterDataset`` (as ../shared/bench/time_weaver_loader.py drives it), 0 and 2
    workers, its standardisation/weights passes timed separately (init);
  * the limit: decoding the same arrays from the Zarr shards and padding them into batches, no sampling.
Reported: delivered jets/s per core (jets / CPU seconds of the process and its workers), wall jets/s,
unique jets/s, bytes read per delivered jet (0 workers) and peak RSS.
"""

from __future__ import annotations

import argparse
import copy
import glob
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numcodecs.blosc
import numpy as np
import torch
import yaml

from jetstore import JetDataset
from jetstore.cli import resolve_schema
from jetstore.config.weaver import training_config_from_dict
from jetstore.convert.cluster import dask_client
from jetstore.convert.run import ConvertRequest, convert
from jetstore.sampler.batch import BatchBuilder
from jetstore.stats.result import write_stats
from jetstore.stats.run import compute_stats
from jetstore.store.dataset import Dataset

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


WORKER_PIDS: list[int] = []


def cpu_seconds() -> float:
    """CPU time of this process and of the live DataLoader workers (read from /proc)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    total = own.ru_utime + own.ru_stime
    ticks = os.sysconf("SC_CLK_TCK")
    for pid in WORKER_PIDS:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
        except (OSError, IndexError):
            pass
    return total


def track_workers(loader) -> None:
    """Remember the worker pids of a DataLoader (persistent workers) or of a running loader iterator."""
    iterator = getattr(loader, "_iterator", None)
    iterator = loader if iterator is None else iterator
    WORKER_PIDS[:] = [w.pid for w in getattr(iterator, "_workers", [])]


def peak_rss_mb() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024


def measure(batches, label_key: str, key_fn) -> dict:
    wall, cpu = time.perf_counter(), cpu_seconds()
    jets, unique = 0, set()
    for batch in batches:
        n = len(batch[label_key])
        jets += n
        unique.update(key_fn(batch))
    wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
    return {"jets": jets, "unique": len(unique), "wall": wall, "cpu": cpu}


def report(name: str, result: dict, bytes_per_jet: float | None = None) -> None:
    measured = result["cpu"] > 0.05 * result["wall"]  # worker CPU unreadable (exited) → not reported
    per_core = f"{result['jets'] / result['cpu']:>10,.0f}" if measured else f"{'n/a':>10}"
    extra = f" | {bytes_per_jet:6.0f} B read/jet" if bytes_per_jet is not None else ""
    print(f"{name:<44} {per_core} jets/s/core  {result['jets'] / result['wall']:>10,.0f} jets/s wall  "
          f"{result['unique'] / result['wall']:>9,.0f} unique/s  ({result['jets']:,} jets){extra}", flush=True)


def jetstore_keys(batch):
    return zip(batch["event"].tolist(), batch["ijet"].tolist(), batch["jet_pt"].tolist(), strict=True)


def feature_keys(batch):
    """Identify jets by their first particle's features (weaver returns no observers when training)."""
    points = batch["pf_features"].reshape(len(batch["pf_features"]), -1)[:, :4].numpy()
    return map(bytes, points)


def run_jetstore(url, config, workers, jets_per_epoch, epochs=2) -> tuple[dict, float | None]:
    ds = JetDataset(url, config, batch_size=512, seed=1, jets_per_epoch=jets_per_epoch, observers=True)
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=workers,
                                         persistent_workers=workers > 0)
    list(loader)  # warm up: numba compilation, page cache, worker start-up
    track_workers(loader)
    results = []
    for epoch in range(1, epochs + 1):
        ds.set_epoch(epoch)
        results.append(measure(loader, "_label_", jetstore_keys))
    total = {k: sum(r[k] for r in results) for k in ("jets", "wall", "cpu")}
    total["unique"] = max(r["unique"] for r in results)
    bytes_per_jet = ds.last_stream.bytes_read / results[-1]["jets"] if workers == 0 and ds.last_stream else None
    WORKER_PIDS.clear()
    return total, bytes_per_jet


def run_weaver(files, config_path, workers, max_batches) -> tuple[dict, float]:
    import weaver.utils.data.preprocess as preprocess
    from weaver.utils.dataset import SimpleIterDataset

    preprocess.time.sleep = lambda _: None
    start = time.perf_counter()
    ds = SimpleIterDataset({"_": files}, config_path, batch_size=512, for_training=True,
                           load_range_and_fraction=((0, 1), 1, 1), fetch_by_files=False, fetch_step=0.01,
                           name="train")
    init = time.perf_counter() - start
    loader = torch.utils.data.DataLoader(ds, batch_size=512, drop_last=True, num_workers=workers,
                                         persistent_workers=False, prefetch_factor=2 if workers else None)
    iterator = iter(loader)
    next(iterator)  # start-up (workers, first fetch) excluded, as for jetstore
    track_workers(iterator)

    def batches():
        for i, (X, y, _) in enumerate(iterator):
            if i >= max_batches:
                return
            yield {"_label_": y["_label_"], **X}

    result = measure(batches(), "_label_", feature_keys)
    WORKER_PIDS.clear()
    return result, init


def raw_limit(dataset: Dataset, config, stats) -> dict:
    _raw_limit(dataset, config, stats)  # warm up (numba compilation)
    return _raw_limit(dataset, config, stats)


def _raw_limit(dataset: Dataset, config, stats) -> dict:
    """Decode every needed array of every shard and pad all jets into 512-jet batches: no sampling."""
    centers = {n: (v.center, v.scale) for n, v in stats.variables.items()}
    builder = BatchBuilder(dataset.schema, config, centers)
    needs = builder.needs
    wall, cpu = time.perf_counter(), cpu_seconds()
    jets = 0
    for shard in dataset.manifest.shards:
        with dataset.source.reader(shard) as reader:
            table = reader.read(needs.jet_columns, needs.features)
        compact = builder.prepare(table)
        for start in range(0, compact.n, 512):
            builder.assemble(compact, np.arange(start, min(start + 512, compact.n), dtype=np.int64))
        jets += compact.n
    return {"jets": jets, "unique": jets, "wall": time.perf_counter() - wall, "cpu": cpu_seconds() - cpu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inputs", default=str(SHARED / "data/cms_ak4/*.root"))
    parser.add_argument("--config", default=str(SHARED / "bench/weaver_cms_ak4.yaml"))
    parser.add_argument("--scratch", default=str(Path(__file__).parent / "out"))
    parser.add_argument("--weaver-batches", type=int, default=40)
    args = parser.parse_args()
    numcodecs.blosc.use_threads = False
    torch.set_num_threads(1)
    files = sorted(glob.glob(args.inputs))
    if not files:
        sys.exit(f"no input matches {args.inputs}")
    options = yaml.safe_load(Path(args.config).read_text())
    options["observers"] = ["jet_pt", "jet_eta", "event", "ijet"]
    unweighted = copy.deepcopy(options)
    unweighted.pop("weights")
    configs = {"weights": training_config_from_dict(options), "no weights": training_config_from_dict(unweighted)}
    Path(args.scratch).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.scratch) as scratch:
        urls = {}
        with dask_client(workers=2, quiet=True) as client:
            for fmt in ("zarr", "parquet"):
                urls[fmt] = f"{scratch}/ak4.{fmt}"
                convert(ConvertRequest(tuple(files), resolve_schema("cms_ak4"), urls[fmt], fmt), client,
                        progress=False, log=lambda _: None)
                dataset = Dataset.open(urls[fmt])
                for config in configs.values():
                    write_stats(dataset.fs, dataset.root, compute_stats(dataset, config, client, log=lambda _: None))
        dataset = Dataset.open(urls["zarr"])
        total = dataset.manifest.n_jets
        print(f"{len(files)} files, {total:,} jets; batch 512; epochs of {total:,} delivered jets; "
              f"torch {torch.__version__}, {os.cpu_count()} cores", flush=True)
        from jetstore.stats.result import read_stats

        stats = read_stats(dataset.fs, dataset.root, configs["weights"].hash, dataset.manifest.plan_hash)
        report("limit: decode (Zarr) + pad, no sampling", raw_limit(dataset, configs["weights"], stats))
        for weighting, config in configs.items():
            print(f"-- {weighting}")
            for fmt in ("zarr", "parquet"):
                for workers in (0, 2):
                    result, bytes_per_jet = run_jetstore(urls[fmt], config, workers, total)
                    report(f"jetstore {fmt}, {workers} workers", result, bytes_per_jet)
            config_path = Path(scratch) / f"weaver-{weighting.replace(' ', '-')}.yaml"
            config_path.write_text(yaml.safe_dump(options if weighting == "weights" else unweighted))
            for workers in (0, 2):
                result, init = run_weaver(files, str(config_path), workers, args.weaver_batches)
                report(f"weaver-core, {workers} workers (init {init:.1f} s)", result)
        print(f"peak RSS {peak_rss_mb():,.0f} MB (largest of this process and its workers)")


if __name__ == "__main__":
    main()
