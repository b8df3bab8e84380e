"""Benchmark ``jetstore convert`` against the raw uproot read of the same branches (the limit).

    python bench/convert.py [--inputs '../shared/data/cms_ak4/*.root'] [--schema cms_ak4] [--repeat 3]

Side by side in one run, on one core each:
  * raw    : uproot ``TTree.arrays`` of every branch the schema reads (decompression + interpretation);
  * shard  : jetstore's per-shard task (read + select + cast + compress + write + checksum), in process;
  * dask   : the whole ``convert`` on a LocalCluster (wall clock, all workers),
for both formats with the default zstd codec and with lz4.
Reports jets/s per core, the ratio to raw, and output bytes per jet against the ROOT input.
Goals (issue #2): shard ≥ 0.7× raw; output ≤ 0.75× input bytes with float32.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numcodecs.blosc
import uproot

from jetstore.cli import resolve_schema
from jetstore.conversion.cluster import dask_client
from jetstore.conversion.plan import plan_shards
from jetstore.conversion.root_input import inspect_input
from jetstore.conversion.run import ConvertRequest, convert
from jetstore.conversion.shard import ShardJob, run_shard
from jetstore.store.layout import Layout
from jetstore.store.storage import StorageOptions

DEFAULT_INPUTS = str(Path(__file__).resolve().parents[1].parent / "shared/data/cms_ak4/*.root")


def best_of(repeat: int, function) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inputs", default=DEFAULT_INPUTS)
    parser.add_argument("--schema", default="cms_ak4")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--scratch", default=str(Path(__file__).parent / "out"),
                        help="where outputs are written (a real disk, not a slow tmpfs/overlay)")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    numcodecs.blosc.use_threads = False  # one core: as in a Dask worker thread, where Blosc never threads
    files = sorted(glob.glob(args.inputs))
    if not files:
        sys.exit(f"no input matches {args.inputs}")
    schema = resolve_schema(args.schema)
    branches = sorted(schema.branches)
    infos = [inspect_input(f, schema, {}) for f in files]
    entries = sum(i.entries for i in infos)
    input_bytes = sum(i.size for i in infos)

    def raw_read() -> None:
        for f in files:
            with uproot.open(f) as handle:
                handle[schema.tree].arrays(branches, library="ak", how=dict)

    raw_s = best_of(args.repeat, raw_read)
    results = {"inputs": len(files), "entries": entries, "input_bytes_per_jet": input_bytes / entries,
               "raw_jets_per_s_per_core": entries / raw_s}
    print(f"{len(files)} files, {entries:,} jets, {input_bytes / entries:.0f} input bytes/jet (ROOT, LZ4)")
    print(f"raw uproot read          {entries / raw_s:>10,.0f} jets/s per core")
    Path(args.scratch).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.scratch) as scratch:
        for fmt, codec in (("zarr", "zstd"), ("parquet", "zstd"), ("zarr", "lz4"), ("parquet", "lz4")):
            layout = Layout(codec=codec)
            tasks = plan_shards(infos, 100_000, schema.hash, fmt, layout)
            out = f"{scratch}/shard-{fmt}-{codec}"

            def shard_run(fmt=fmt, tasks=tasks, out=out, layout=layout) -> None:
                shutil.rmtree(out, ignore_errors=True)
                for task in tasks:
                    run_shard(ShardJob(task, schema, out, fmt, layout, 20_000, StorageOptions(), StorageOptions()))

            shard_s = best_of(args.repeat, shard_run)
            request = ConvertRequest(tuple(files), schema, f"{scratch}/dask-{fmt}-{codec}", fmt, layout=layout,
                                     overwrite=True)
            with dask_client(workers=args.workers, quiet=True) as client:
                convert(request, client, progress=False, log=lambda _: None)  # warm the workers
                start = time.perf_counter()
                report = convert(request, client, progress=False, log=lambda _: None)
                dask_s = time.perf_counter() - start
            manifest = report.manifest
            out_per_jet = manifest.bytes / manifest.n_jets
            results[f"{fmt}-{codec}"] = {
                "shard_jets_per_s_per_core": entries / shard_s, "ratio_to_raw": raw_s / shard_s,
                "dask_wall_jets_per_s": entries / dask_s, "dask_workers": args.workers,
                "output_bytes_per_jet": out_per_jet, "output_over_input": out_per_jet / (input_bytes / entries),
            }
            r = results[f"{fmt}-{codec}"]
            print(f"convert {fmt:<8} {codec:<5} {r['shard_jets_per_s_per_core']:>10,.0f} jets/s per core "
                  f"= {r['ratio_to_raw']:.2f}× raw   | dask {args.workers} workers: "
                  f"{r['dask_wall_jets_per_s']:,.0f} jets/s wall | {out_per_jet:.0f} bytes/jet = "
                  f"{r['output_over_input']:.2f}× input")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
