"""Benchmark ``jetstore stats`` against weaver-core's own passes and a ROOT RDataFrame computation.

    python bench/stats.py [--inputs '../shared/data/cms_ak4/*.root'] [--config ../shared/bench/weaver_cms_ak4.yaml]

Side by side in one run, one core each:
  * weaver-core 0.5.3: AutoStandardizer.produce + WeightMaker.produce on the ROOT files (its two passes);
  * RDataFrame (one thread): the same selection and new variables, per-class 2-D reweighting histograms
    and a 1-D histogram per auto variable (percentiles from 2,000 bins), on the ROOT files; reported
    with and without its JIT start-up (marginal rate from a run on a quarter of the jets);
  * jetstore: the stats passes in process on the converted Zarr and Parquet datasets (per core), and
    ``compute_stats`` on a one-worker LocalCluster (includes Dask overheads).
Reports jets/s per core. Goals (issue #3): ≥ RDataFrame's marginal rate and ≥ 20× weaver-core.
"""

from __future__ import annotations

import argparse
import copy
import glob
import os
import sys
import tempfile
import time
from pathlib import Path

import numcodecs.blosc
import numpy as np

from jetstore import Dataset, compute_stats, convert
from jetstore.config import load_training_config
from jetstore.conversion.cluster import dask_client
from jetstore.model.fraction import Fraction
from jetstore.stats import quantiles
from jetstore.stats.passes import ShardWork, merge_pass1, merge_pass2, pass1, pass2

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def time_weaver(files: list[str], config_path: str, sleeps: bool) -> float:
    """weaver-core's two passes; as shipped it sleeps 10 s after each warning (NaN found, jets outside the
    reweighting classes or bins), which users wait for too, so both are reported."""
    import weaver.utils.data.preprocess as preprocess
    from weaver.utils.data.config import DataConfig

    preprocess.time.sleep = time.sleep if sleeps else (lambda _: None)
    config = DataConfig.load(config_path)
    start = time.perf_counter()
    preprocess.AutoStandardizer(files, config).produce()
    preprocess.WeightMaker(files, config).produce()
    return time.perf_counter() - start


def rdataframe_graph(files: list[str], config, entries: int | None):
    import ROOT

    frame = ROOT.RDataFrame("Events", files)
    if entries:
        frame = frame.Range(entries)
    frame = frame.Filter("(jet_pt > 20) && (std::abs(jet_eta) < 2.5) && (label_undef == 0)")
    frame = frame.Define("pfcand_dxy_t", "ROOT::VecOps::tanh(jet_pfcand_dxy * 10)") \
                 .Define("pfcand_dz_t", "ROOT::VecOps::tanh(jet_pfcand_dz * 10)")
    spec = config.weights
    results = []
    for label in spec.classes:
        model = ROOT.RDF.TH2DModel(label, label, len(spec.x_bins) - 1, np.array(spec.x_bins),
                                   len(spec.y_bins) - 1, np.array(spec.y_bins))
        results.append(frame.Filter(f"{label} == 1").Histo2D(model, spec.x_var, spec.y_var))
    for name in config.auto_variables:
        results.append(frame.Histo1D(ROOT.RDF.TH1DModel(name, name, 2000, -50, 50), name))
    return results


def time_rdataframe(files: list[str], config, entries: int | None) -> float:
    import ROOT

    ROOT.DisableImplicitMT()
    start = time.perf_counter()
    results = rdataframe_graph(files, config, entries)
    for result in results:
        result.GetValue()
    for result in results[len(config.weights.classes):]:  # percentiles, as the standardisation needs
        probabilities = ROOT.std.vector("double")([0.16, 0.5, 0.84])
        values = ROOT.std.vector("double")(3)
        result.GetQuantiles(3, values.data(), probabilities.data())
    return time.perf_counter() - start


def time_in_process(dataset: Dataset, config) -> float:
    """The two passes without Dask, one shard after another (one core)."""
    entries = {i.url: i.entries for i in dataset.manifest.inputs}
    work = ShardWork(dataset.source, dataset.schema, config, Fraction(config.data_fraction, "weaver", entries),
                     Fraction(1.0, "weaver", entries), dataset.unit_jets)
    start = time.perf_counter()
    first = merge_pass1(*(pass1(work, s) for s in dataset.manifest.shards))
    bins = {}
    for name in config.auto_variables:
        ranks = quantiles.percentile_ranks(int(first.moments[name][0]), (16, 50, 84))
        bins[name] = quantiles.locate(quantiles.dense(first.coarse[name]),
                                      [r for pair in ranks.values() for r in pair[:2]]).bins
    merge_pass2(*(pass2(work, s, bins) for s in dataset.manifest.shards))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inputs", default=str(SHARED / "data/cms_ak4/*.root"))
    parser.add_argument("--config", default=str(SHARED / "bench/weaver_cms_ak4.yaml"))
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--rdf-copies", type=int, default=4, help="RDataFrame reads the input list this many times")
    parser.add_argument("--scratch", default=str(Path(__file__).parent / "out"))
    args = parser.parse_args()
    numcodecs.blosc.use_threads = False
    files = sorted(glob.glob(args.inputs))
    if not files:
        sys.exit(f"no input matches {args.inputs}")
    config = load_training_config(args.config)
    import uproot

    jets = sum(uproot.open(f)["Events"].num_entries for f in files)
    print(f"{len(files)} files, {jets:,} jets, config {os.path.basename(args.config)} "
          f"({len(config.auto_variables)} auto variables, {len(config.weights.classes)} reweighted classes)")

    shipped_s = time_weaver(files, args.config, sleeps=True)
    weaver_s = min(time_weaver(files, args.config, sleeps=False) for _ in range(args.repeat))
    print(f"weaver-core passes, as shipped (10 s sleeps) {jets / shipped_s:>10,.0f} jets/s  ({shipped_s:.2f} s)")
    print(f"weaver-core passes, sleeps removed           {jets / weaver_s:>10,.0f} jets/s  ({weaver_s:.2f} s)")
    repeated = files * args.rdf_copies  # enough jets for RDataFrame's event loop to dominate its JIT start-up
    total = jets * args.rdf_copies
    rdf_full = min(time_rdataframe(repeated, config, None) for _ in range(args.repeat))
    rdf_quarter = min(time_rdataframe(repeated, config, total // 4) for _ in range(args.repeat))
    marginal = (total - total // 4) / max(rdf_full - rdf_quarter, 1e-9)
    print(f"RDataFrame, 1 thread, with JIT start-up      {total / rdf_full:>10,.0f} jets/s  ({rdf_full:.2f} s, "
          f"{total:,} jets)")
    print(f"RDataFrame, 1 thread, marginal               {marginal:>10,.0f} jets/s")

    Path(args.scratch).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.scratch) as scratch, dask_client(workers=1, quiet=True) as client:
        for fmt in ("zarr", "parquet"):
            url = f"{scratch}/ds.{fmt}"
            convert(files, "cms_ak4", url, format=fmt, client=client, progress=False, log=lambda _: None)
            dataset = Dataset.open(url)
            local_s = min(time_in_process(dataset, copy.deepcopy(config)) for _ in range(args.repeat))
            compute_stats(dataset, config, client, log=lambda _: None, reuse=False)  # no per-shard caches
            start = time.perf_counter()
            compute_stats(dataset, config, client, log=lambda _: None, reuse=False)  # no per-shard caches
            dask_s = time.perf_counter() - start
            print(f"jetstore {fmt:<8} in process (1 core)        {jets / local_s:>10,.0f} jets/s  "
                  f"= {shipped_s / local_s:5.1f}× weaver as shipped, {weaver_s / local_s:4.1f}× without sleeps, "
                  f"{jets / local_s / marginal:4.2f}× RDF marginal")
            print(f"jetstore {fmt:<8} Dask, 1 worker             {jets / dask_s:>10,.0f} jets/s  "
                  f"= {shipped_s / dask_s:5.1f}× weaver as shipped, {weaver_s / dask_s:4.1f}× without sleeps")


if __name__ == "__main__":
    main()
