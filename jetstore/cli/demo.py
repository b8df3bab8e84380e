"""``jetstore demo``: the bundled sample converted to Zarr and Parquet datasets on a local Dask cluster."""

from __future__ import annotations

import argparse
from importlib import resources
from pathlib import Path

from jetstore.cli import convert
from jetstore.cli.common import add_command, positive


def add(subparsers, common: argparse.ArgumentParser) -> None:
    demo = add_command(subparsers, common, "demo", run, help="convert the bundled sample on a local Dask cluster")
    demo.add_argument("--output", default="demo-output", help="folder for the demo datasets")
    demo.add_argument("--workers", type=positive, default=2)


def run(args: argparse.Namespace) -> int:
    from jetstore.conversion import convert as convert_files

    data = resources.files("jetstore") / "data"
    inputs = sorted(str(p) for p in Path(str(data)).glob("sample_cms_ak4_*.root"))
    status = 0
    for fmt in ("zarr", "parquet"):
        output = str(Path(args.output) / f"sample_cms_ak4.{fmt}")
        report = convert_files(inputs, "cms_ak4", output, format=fmt, jets_per_shard=1000, workers=args.workers,
                               progress=not args.quiet, quiet=bool(args.quiet))
        status |= convert.reported(output, report)
    return status
