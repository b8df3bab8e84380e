"""``jetstore schema infer|check``: a schema proposed for unseen files, or a schema file validated."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from jetstore.cli.common import add_command, output_file
from jetstore.schema import load_schema


def add(subparsers, common: argparse.ArgumentParser) -> None:
    schema = add_command(subparsers, common, "schema", None, help="work with schemas")
    commands = schema.add_subparsers(dest="schema_command", required=True)
    infer = add_command(commands, common, "infer", infer_schema,
                        help="write a schema for unseen ROOT, Parquet or HDF5 files (all must agree)")
    infer.add_argument("files", nargs="+", metavar="FILE")
    infer.add_argument("--tree", help="ROOT: tree name (default: the only TTree in the file, else Events)")
    infer.add_argument("--name", help="schema name (default: from the file names)")
    infer.add_argument("--output", "-o", help="write the YAML here (default: stdout)")
    check = add_command(commands, common, "check", check_schema, help="validate a schema file")
    check.add_argument("schema")


def infer_schema(args: argparse.Namespace) -> int:
    from jetstore.conversion.infer import infer_schema
    from jetstore.schema.load import schema_from_dict

    if args.output:
        output_file(args.output, "--output")
    data, skipped = infer_schema(args.files, args.tree, args.name)
    schema_from_dict(data, where=args.files[0])
    names = ", ".join(Path(f).name for f in args.files[:3]) + (f" and {len(args.files) - 3} more"
                                                                 if len(args.files) > 3 else "")
    text = f"# inferred by `jetstore schema infer` from {names}\n"
    if skipped:
        text += f"# left out (not numbers or vectors of numbers): {', '.join(skipped)}\n"
    text += yaml.safe_dump(data, sort_keys=False)
    if args.output:
        Path(args.output).write_text(text)
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def check_schema(args: argparse.Namespace) -> int:
    from jetstore.conversion.inputs import get_kind

    schema = load_schema(args.schema)
    if schema.source is not None:
        get_kind(schema.source)
    features = sum(len(b.features) for b in schema.blocks)
    print(f"{args.schema}: ok ({len(schema.jets)} jet columns, {len(schema.labels)} labels, "
          f"{len(schema.blocks)} blocks with {features} features, hash {schema.hash})")
    return 0
