"""``jetstore stats``: standardisation and sampling weights of a config over one or several datasets (stored with
them), and their plots."""

from __future__ import annotations

import argparse

from jetstore.cli.common import add_command, add_datasets, open_datasets, output_folder, positive


def add(subparsers, common: argparse.ArgumentParser) -> None:
    stats = add_command(subparsers, common, "stats", run,
                        help="compute standardisation and sampling weights for a config (over the union of "
                             "several datasets: as weaver over all their files)")
    add_datasets(stats)
    stats.add_argument("--config", required=True, help="weaver-core data-config YAML")
    stats.add_argument("--fraction", type=float,
                       help="use this fraction of the jets (default: preprocess.data_fraction for "
                            "standardisation and all jets for weights, as weaver-core)")
    stats.add_argument("--fraction-mode", choices=("weaver", "random"), default="weaver",
                       help="weaver: the first part of every input file, exactly as weaver-core; random: a fixed "
                            "pseudo-random subset of every shard")
    stats.add_argument("--scheduler", help="address of an existing Dask scheduler (default: a LocalCluster)")
    stats.add_argument("--workers", type=positive, help="LocalCluster worker processes (default: cores)")
    stats.add_argument("--plots", metavar="DIR", help="write plots here (PNG and PDF; needs jetstore[plots])")
    stats.add_argument("--experiment-label", metavar="TEXT",
                       help='label every plot, e.g. "CMS Simulation" (first word bold)')


def run(args: argparse.Namespace) -> int:
    from jetstore.config import load_training_config
    from jetstore.conversion.cluster import dask_client
    from jetstore.stats.result import write_stats
    from jetstore.stats.run import compute_stats

    if args.plots:  # a missing plots extra or a file in the way is reported before the cluster starts
        from jetstore.stats.plots import write_plots

        output_folder(args.plots, "--plots")
    config = load_training_config(args.config)
    collection = open_datasets(args)
    with dask_client(args.scheduler, args.workers, quiet=bool(args.quiet)) as client:
        result = compute_stats(collection, config, client, args.fraction, args.fraction_mode,
                               progress=not args.quiet)
    path = write_stats(collection, result)
    print(f"stats for config {config.hash} → {path}")
    print(f"  jets read {result.jets_read:,}, selected {result.jets_selected:,} (standardisation fraction "
          f"{result.standardization_fraction})")
    for name, v in result.variables.items():
        print(f"  {name:<28} center {v.center:>11.5g}  scale {v.scale:>11.5g}  entries {v.count:,}"
              + (f"  NaN {v.nan_count:,}" if v.nan_count else ""))
    for label, hist in result.class_hists.items():
        kept = float((hist * result.weight_tables[label]).sum())
        print(f"  {label:<12} {hist.sum():>10,.0f} jets in bins, weighted {kept:>10,.1f}")
    if args.plots:
        written = write_plots(result, config, args.plots, args.experiment_label)
        print(f"  {len(written)} plot(s) in {args.plots}")
    return 0
