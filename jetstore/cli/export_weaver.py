"""``jetstore export-weaver``: a weaver data-config with the stored stats, and (``--files``) the jets as
weaver-ready Parquet files with the weaver command that trains on them."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from jetstore.cli.common import add_command, add_datasets, fraction, open_datasets, output_file, output_folder


def add(subparsers, common: argparse.ArgumentParser) -> None:
    export = add_command(subparsers, common, "export-weaver", run,
                         help="write a weaver data-config with the stored stats")
    add_datasets(export)
    export.add_argument("--config", required=True)
    export.add_argument("--output", "-o", required=True)
    export.add_argument("--files", metavar="DIR", help="also write the jets as weaver-ready Parquet files here "
                        "(DIR/train, DIR/val: the held-out split; rows shuffled) and print the weaver command")
    export.add_argument("--holdout", type=fraction, help="held-out fraction for DIR/val (default: the trainer's, 0.1)")
    export.add_argument("--network-config", metavar="FILE", help="network file named in the printed command")


def run(args: argparse.Namespace) -> int:
    from jetstore.config import load_training_config
    from jetstore.interop.weaver import export_weaver_yaml, weaver_command, weaver_hint, write_weaver_files
    from jetstore.stats.result import read_stats

    output_file(args.output, "--output")
    if args.files:
        output_folder(args.files, "--files")
    config = load_training_config(args.config)
    collection = open_datasets(args)
    result = read_stats(collection, config.hash)
    if not args.files:
        Path(args.output).write_text(export_weaver_yaml(config, result))
        print(f"wrote {args.output}\n" + "\n".join(weaver_hint(m.url) for m in collection), file=sys.stderr)
        return 0
    print(f"writing weaver-ready Parquet files to {args.files}", file=sys.stderr)
    folders = {}  # weaver's named groups: a folder per sample (datasets of one sample share it)
    for member in collection:
        target = Path(args.files) if collection.single else Path(args.files) / member.name
        folders[None if collection.single else member.name] = write_weaver_files(member.dataset, target,
                                                                                 args.holdout)
    command = weaver_command(args.output, folders, weights=config.weights is not None, network=args.network_config)
    Path(args.output).write_text(export_weaver_yaml(config, result, f"weaver-core: {command}"))
    print(f"wrote {args.output}; train weaver-core on the files with (stdout):", file=sys.stderr)
    print(command)
    return 0
