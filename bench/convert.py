"""Benchmark ``jetstore convert`` against the raw uproot read of the same branches (the limit).

    python bench/convert.py [--inputs '../shared/data/cms_ak4/*.root'] [--schema cms_ak4]
                            [--jetclass-inputs 'bench/out/jetclass_pythia/*.root'] [--repeat 3]
                            [--formats zarr-zstd,parquet-zstd,zarr-lz4,parquet-lz4] [--profile]

Side by side in one run, jets per CPU second (best of --repeat, so other load on the machine counts little):
  * raw:   uproot ``TTree.arrays`` of every branch the schema reads (decompression + interpretation);
  * shard: jetstore's per-shard task (read + select + cast + sort + compress + write + checksum), in process;
  * whole: ``jetstore convert`` on a one-worker LocalCluster, its marginal rate (the inputs twice vs once, so
    cluster start-up and fixed costs cancel) in CPU seconds of the client (scheduler) and the worker;
for both formats with the default zstd codec and with lz4; output bytes per jet against the ROOT input
(LZ4). ``--profile``: where the per-shard task's time goes (cProfile, per jet). Goals (issues 34, scale-out):
whole ≥ 0.7× raw; output ≤ 0.75× the input bytes on cms_ak4 and on JetClass-style jets (--jetclass-inputs,
made with ../shared/tools/mkjetlib.py --scheme jetclass).
"""

from __future__ import annotations

import argparse
import cProfile
import glob
import json
import os
import pstats
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numcodecs.blosc
import uproot

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from common import best_of  # noqa: E402

from jetstore import convert, load_schema  # noqa: E402
from jetstore.conversion.cluster import dask_client  # noqa: E402
from jetstore.conversion.infer import infer_schema  # noqa: E402
from jetstore.conversion.plan import Naming, plan_shards  # noqa: E402
from jetstore.conversion.read import inspect_input  # noqa: E402
from jetstore.conversion.shard import ShardJob, run_shard  # noqa: E402
from jetstore.schema import Schema, schema_from_dict  # noqa: E402
from jetstore.store.layout import Layout, TableColumns  # noqa: E402
from jetstore.store.storage import StorageOptions  # noqa: E402
from jetstore.store.writer import DatasetWriter  # noqa: E402

SHARED = REPO.parent / "shared"
STAGES = {  # what the per-shard task does, by the functions that do it (--profile; the names before batching too)
    "read the inputs (uproot, selection, casts)": ("read_range",),
    "sort by (class, pT)": ("sort_order", "take"),
    "encode the chunks (Blosc)": ("_encode", "_chunks"),
    "lay out and write the zip": ("write_zip", "_put"),
    "publish, checksum, record": ("commit",),
}


def measure(files: list[str], schema: Schema, repeat: int, scratch: str, formats, profile: bool = False) -> dict:
    schema_name = schema.name
    branches = sorted(schema.branches)
    infos = [inspect_input(f, schema, {}) for f in files]
    entries = sum(i.entries for i in infos)
    input_bytes = sum(os.path.getsize(f) for f in files)

    def raw_read() -> None:
        for f in files:
            with uproot.open(f) as handle:
                handle[schema.tree].arrays(branches, library="ak", how=dict)

    raw_s = best_of(repeat, raw_read, time.process_time)
    results = {"inputs": len(files), "entries": entries, "input_bytes_per_jet": input_bytes / entries,
               "raw_jets_per_s_per_core": entries / raw_s}
    print(f"\n{schema_name}: {len(files)} files, {entries:,} jets, {input_bytes / entries:.0f} input bytes/jet (ROOT)")
    print("| | jets/s per core | × raw read | bytes/jet | × ROOT input |\n| --- | ---: | ---: | ---: | ---: |")
    print(f"| raw uproot `TTree.arrays` of the schema's branches | {entries / raw_s:,.0f} | 1.00 | | |")
    columns = TableColumns.build([c.name for c in schema.jet_columns],
                                 {b.name: [f.name for f in b.features] for b in schema.blocks}, infos[0].dtypes)
    twice = files + [str(link) for link in _links(files, Path(scratch) / "twice")]
    for fmt, codec in formats:
        layout = Layout(codec=codec)
        tasks = plan_shards(infos, 100_000, schema.hash, fmt, layout, Naming("bench"))
        out = f"{scratch}/shard-{fmt}-{codec}"

        def shard_run(fmt=fmt, tasks=tasks, out=out, layout=layout) -> None:
            shutil.rmtree(out, ignore_errors=True)
            with DatasetWriter(out, run_id=uuid.uuid4().hex).hold() as (writer, _):  # what a worker is handed
                for task in tasks:
                    run_shard(ShardJob(task, schema, writer, fmt, layout, columns, 20_000, StorageOptions()))

        shard_s = best_of(repeat, shard_run, time.process_time)
        if profile:
            print_profile(shard_run, entries, f"{fmt} {codec}")
        whole, reports = {}, {}
        # a shard per input file here: packed together, the second copy's jets would sort next to their twins and
        # compress (and cost) less than new jets
        options = dict(format=fmt, layout=layout, jets_per_shard=max(i.entries for i in infos), progress=False,
                       log=lambda _: None, overwrite=True)
        with dask_client(workers=1, quiet=True) as client:
            for name, inputs in (("once", files), ("twice", twice)):
                target = f"{scratch}/whole-{fmt}-{codec}-{name}"
                reports[name] = convert(inputs, schema, target, client=client, **options)  # warm-up
                whole[name] = best_of(repeat, lambda i=inputs, t=target, o=options: convert(i, schema, t,
                                                                                          client=client, **o),
                                      lambda: cluster_cpu(client))
        marginal = entries / (whole["twice"] - whole["once"])
        manifest = reports["once"].manifest
        out_per_jet = manifest.bytes / manifest.n_jets
        results[f"{fmt}-{codec}"] = {
            "shard_jets_per_s_per_core": entries / shard_s, "shard_over_raw": raw_s / shard_s,
            "whole_marginal_jets_per_s": marginal, "whole_over_raw": marginal * raw_s / entries,
            "output_bytes_per_jet": out_per_jet, "output_over_input": out_per_jet / (input_bytes / entries),
        }
        r = results[f"{fmt}-{codec}"]
        print(f"| per-shard task, {fmt} {codec} | {r['shard_jets_per_s_per_core']:,.0f} | {r['shard_over_raw']:.2f} "
              f"| {out_per_jet:.0f} | {r['output_over_input']:.2f} |")
        print(f"| whole `jetstore convert`, 1 worker, marginal, {fmt} {codec} | {marginal:,.0f} | "
              f"{r['whole_over_raw']:.2f} | | |", flush=True)
    return results


def cluster_cpu(client) -> float:
    """CPU seconds of this process (the client and its scheduler) and of the cluster's workers."""
    return time.process_time() + sum(client.run(time.process_time).values())


def print_profile(run, entries: int, what: str) -> None:
    """The per-shard task's time by stage (cumulative, so nested stages overlap), µs per jet."""
    profiler = cProfile.Profile()
    profiler.runcall(run)
    stats = pstats.Stats(profiler).stats
    total = sum(row[2] for row in stats.values())  # internal times add up to the whole run
    print(f"\nper-shard task, {what}: {total / entries * 1e6:.1f} µs/jet under cProfile")
    for stage, names in STAGES.items():
        seconds = sum(row[3] for (path, _, name), row in stats.items() if name in names and "jetstore" in path)
        print(f"  {stage}: {seconds / entries * 1e6:.1f} µs/jet ({seconds / total:.0%})")


def _links(files: list[str], directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    links = []
    for path in files:
        link = directory / f"again_{Path(path).name}"
        if not link.exists():
            link.symlink_to(os.path.abspath(path))
        links.append(link)
    return links


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inputs", default=str(SHARED / "data/cms_ak4/*.root"))
    parser.add_argument("--schema", default="cms_ak4")
    parser.add_argument("--jetclass-inputs", default=str(REPO / "bench/out/jetclass_pythia/*.root"))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--scratch", default=str(REPO / "bench/out"), help="a real disk, not a slow tmpfs")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--formats", default="zarr-zstd,parquet-zstd,zarr-lz4,parquet-lz4",
                        help="format-codec pairs to measure (comma-separated)")
    parser.add_argument("--profile", action="store_true", help="where the per-shard task's time goes")
    args = parser.parse_args()
    numcodecs.blosc.use_threads = False  # one core: as in a Dask worker thread, where Blosc never threads
    files = sorted(glob.glob(args.inputs))
    if not files:
        sys.exit(f"no input matches {args.inputs}")
    Path(args.scratch).mkdir(parents=True, exist_ok=True)
    formats = tuple(tuple(pair.split("-")) for pair in args.formats.split(","))
    print(f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory(dir=args.scratch) as scratch:
        results = {args.schema: measure(files, load_schema(args.schema), args.repeat, scratch, formats, args.profile)}
        jetclass = sorted(glob.glob(args.jetclass_inputs))
        if jetclass:  # their schema as `jetstore schema infer` proposes it (int8 for charges and particle ids)
            schema = schema_from_dict(infer_schema(jetclass, name="jetclass_style")[0])
            results["jetclass"] = measure(jetclass, schema, args.repeat, scratch, (("zarr", "zstd"), ("zarr", "lz4")))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
