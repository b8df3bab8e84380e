"""Benchmark ``jetstore.open(url).arrays(...)`` against the raw read of the same columns from the shards.

    python bench/read.py [--inputs '../shared/data/cms_ak4/*.root'] [--copies 3] [--repeat 3]

The inputs are converted (Zarr and Parquet, the defaults: 100k-jet shards) into a scratch folder, then side by
side in one run, CPU seconds of this process (I/O threads included), best of --repeat:
  * raw: every shard's reader (``ShardReader.read``, exact byte ranges, decode) for the columns, one after
    the other: the decode limit of the same columns;
  * ``jetstore.open(url).arrays(columns)`` as awkward, numpy and pandas, and ``iterate`` in 100k-jet steps;
  * outside readers for reference: zarr-python on the Zarr shards (a jet's nodes by their starts) and pyarrow
    on the Parquet shards.
Column sets: jet-level only, a jet column and a node feature (a plot of an input variable), every column.
Goal (issue 28): ``arrays`` ≥ 0.7× the raw read rate of the same columns.
"""

from __future__ import annotations

import argparse
import glob
import sys
import tempfile
import time
from pathlib import Path

import numcodecs.blosc
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from common import best_of, copies_of  # noqa: E402

import jetstore  # noqa: E402
from jetstore import Dataset, convert  # noqa: E402
from jetstore.arrays.columns import SAMPLE  # noqa: E402
from jetstore.conversion.cluster import dask_client  # noqa: E402

SHARED = REPO.parent / "shared"
COLUMN_SETS = {
    "jet-level: jet_pt, jet_eta, label_b": ["jet_pt", "jet_eta", "label_b"],
    "jet_pt + jet_pfcand_pt_log": ["jet_pt", "jet_pfcand_pt_log"],
    "every column": None,
}


def raw_read(dataset: Dataset, columns: list[str] | None) -> int:
    """Every shard's reader for ``columns``: the decode limit."""
    selected = jetstore.open(dataset).columns(columns)
    jets = 0
    for shard in dataset.manifest.shards:
        table = dataset.source.reader(shard).read(selected.selection)
        jets += table.n_jets
    return jets


def zarr_python(url: str, columns: list[str] | None, dataset: Dataset) -> None:
    """zarr-python alone, as docs/reading.md reads a shard (node values gathered by the jets' starts)."""
    import zarr

    selected = jetstore.open(dataset).columns(columns)
    root = zarr.open_group(url, mode="r")
    for shard in root.attrs["shards"]:
        group = zarr.open_group(zarr.storage.ZipStore(f"{url}/{shard['path']}", mode="r"), mode="r")
        for name in selected.jets:
            group[f"jets/{name}"][:]
        for block, features in selected.blocks.items():
            starts, counts = group[f"{block}/starts"][:], group[f"{block}/counts"][:]
            where = np.repeat(starts - np.cumsum(counts) + counts, counts) + np.arange(counts.sum())
            for name in features:
                group[f"{block}/{name}"][:][where]


def pyarrow_read(url: str, columns: list[str] | None, dataset: Dataset) -> None:
    import pyarrow.parquet as pq

    names = [c for c in jetstore.open(dataset).columns(columns).names if c != SAMPLE]
    for shard in dataset.manifest.shards:
        pq.read_table(f"{url}/{shard.path}", columns=names)


def measure(url: str, repeat: int) -> None:
    dataset = Dataset.open(url)
    jets = jetstore.open(url)
    n = jets.num_entries
    print(f"\n{dataset.manifest.format}: {n:,} jets in {len(dataset.manifest.shards)} shards, "
          f"{dataset.manifest.bytes / n:.0f} B/jet")
    print("| columns | reader | jets/s per core | × raw read |\n| --- | --- | ---: | ---: |")
    for label, columns in COLUMN_SETS.items():
        raw = best_of(repeat, lambda c=columns: raw_read(dataset, c), time.process_time)
        print(f"| {label} | raw: the shard readers | {n / raw:,.0f} | 1.00 |")
        runs = {f"`arrays(library={library!r})`": lambda c=columns, lib=library: jets.arrays(c, library=lib)
                for library in ("ak", "np", "pd")}
        runs["`iterate(step_size=100_000)`"] = lambda c=columns: [None for _ in jets.iterate(c, step_size=100_000)]
        if dataset.manifest.format == "zarr":
            runs["zarr-python (docs/reading.md)"] = lambda c=columns: zarr_python(url, c, dataset)
        else:
            runs["pyarrow `read_table` per shard"] = lambda c=columns: pyarrow_read(url, c, dataset)
        for name, run in runs.items():
            if "np" in name and columns is None:
                continue  # an object array per node feature of every jet: uproot's "np", not a rate to chase
            seconds = best_of(repeat, run, time.process_time)
            print(f"| {label} | {name} | {n / seconds:,.0f} | {raw / seconds:.2f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inputs", default=str(SHARED / "data/cms_ak4/*.root"))
    parser.add_argument("--copies", type=int, default=3, help="copies of the inputs (symlinks): more jets")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--scratch", default=str(REPO / "bench/out"), help="a real disk, not a slow tmpfs")
    args = parser.parse_args()
    numcodecs.blosc.use_threads = False
    files = sorted(glob.glob(args.inputs))
    if not files:
        sys.exit(f"no input matches {args.inputs}")
    Path(args.scratch).mkdir(parents=True, exist_ok=True)
    print(f"{time.strftime('%Y-%m-%d')}, {__import__('os').cpu_count()} cores")
    with tempfile.TemporaryDirectory(dir=args.scratch) as scratch:
        inputs = copies_of([str(Path(f).resolve()) for f in files], args.copies, Path(scratch) / "inputs")
        with dask_client(workers=2, quiet=True) as client:
            urls = []
            for fmt in ("zarr", "parquet"):
                urls.append(f"{scratch}/jets.{fmt}")
                assert convert(inputs, "cms_ak4", urls[-1], format=fmt, client=client, progress=False,
                               log=lambda _: None).ok
        for url in urls:
            measure(url, args.repeat)


if __name__ == "__main__":
    main()
