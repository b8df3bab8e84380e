"""``jetstore convert``: jet libraries (ROOT, Parquet, HDF5) into a sharded dataset, or added to one."""

from __future__ import annotations

import argparse
import sys

from jetstore.cli.common import STORAGE_OPTIONS_HELP, add_command, positive, print_summary, storage_options
from jetstore.conversion.request import ConvertRequest
from jetstore.formats import FORMATS
from jetstore.model.layout import CODECS, Layout


def add(subparsers, common: argparse.ArgumentParser) -> None:
    convert = add_command(subparsers, common, "convert", run,
                          help="convert jet libraries (ROOT, Parquet, HDF5) into a sharded dataset")
    convert.add_argument("inputs", nargs="+", metavar="INPUT",
                         help="ROOT, Parquet or HDF5 files (told by their content): paths, globs or fsspec URLs")
    convert.add_argument("--schema", required=True, help="schema YAML, or the name of a bundled schema")
    convert.add_argument("--output", "-o", required=True, help="dataset URL: local path or s3://bucket/prefix")
    convert.add_argument("--format", choices=sorted(FORMATS), default=ConvertRequest.format, help="dataset format")
    convert.add_argument("--jets-per-shard", type=positive, default=ConvertRequest.jets_per_shard,
                         help="input entries per shard")
    convert.add_argument("--chunk-jets", type=positive, default=Layout.chunk_jets,
                         help="jets per Zarr chunk / Parquet row group")
    convert.add_argument("--chunk-values", type=positive, default=Layout.chunk_values,
                         help="node values per Zarr chunk")
    convert.add_argument("--codec", choices=CODECS, default=Layout.codec,
                         help="zstd: smallest (default); lz4: fastest, ~15%% larger")
    convert.add_argument("--compression-level", type=int, default=Layout.compression_level,
                         help="codec level: higher is smaller and slower")
    convert.add_argument("--read-step", type=positive, default=ConvertRequest.read_step,
                         help="input entries read at once")
    convert.add_argument("--scheduler", help="address of an existing Dask scheduler (default: a LocalCluster)")
    convert.add_argument("--workers", type=positive, help="LocalCluster worker processes (default: cores)")
    convert.add_argument("--storage-options", type=storage_options, default={}, metavar="JSON|@FILE",
                         help=STORAGE_OPTIONS_HELP)
    convert.add_argument("--input-storage-options", type=storage_options, default={}, metavar="JSON|@FILE",
                         help="as --storage-options, for remote inputs")
    replace = convert.add_mutually_exclusive_group()
    replace.add_argument("--overwrite", action="store_true", help="delete any existing dataset first")
    replace.add_argument("--append", action="store_true",
                         help="add the inputs to the existing dataset at --output (same schema and options); inputs "
                              "it already holds are skipped")
    convert.add_argument("--skip-bad-inputs", action="store_true",
                         help="commit the dataset without inputs that failed (still exits non-zero)")
    convert.add_argument("--break-lease", action="store_true",
                         help="take over the dataset's write lease from a conversion that crashed")
    convert.add_argument("--no-progress", action="store_true", help="no progress bar (also with -q)")


def run(args: argparse.Namespace) -> int:
    from jetstore.conversion import convert

    report = convert(
        args.inputs, args.schema, args.output, format=args.format, jets_per_shard=args.jets_per_shard,
        layout=Layout(args.chunk_jets, args.chunk_values, args.compression_level, args.codec), read_step=args.read_step,
        storage_options=args.storage_options, input_storage_options=args.input_storage_options,
        overwrite=args.overwrite, append=args.append, skip_bad_inputs=args.skip_bad_inputs,
        break_lease=args.break_lease, scheduler=args.scheduler, workers=args.workers,
        progress=not (args.no_progress or args.quiet), quiet=bool(args.quiet),
    )
    return reported(args.output, report)


def reported(output: str, report) -> int:
    """A conversion's report on stdout / stderr, and its exit code (1: some inputs failed)."""
    print(f"shards: {report.written} written, {report.reused} reused (verified)", file=sys.stderr)
    if report.manifest is not None:
        print_summary(output, report.manifest)
    if report.failures:
        print(f"\n{len(report.failures)} input(s) failed:", file=sys.stderr)
        for url, reason in report.failures.items():
            print(f"  {url}: {reason}", file=sys.stderr)
        if report.manifest is None:
            print("no manifest written: fix or remove these inputs and rerun (completed shards are kept), "
                  "or pass --skip-bad-inputs", file=sys.stderr)
        return 1
    return 0
