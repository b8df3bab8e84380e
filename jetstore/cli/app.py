"""The ``jetstore`` command line: convert jet libraries (ROOT, Parquet, HDF5) to a sharded dataset or append to
one, inspect and verify it, infer and check schemas, compute and export statistics, train, run the demo.

Exit codes: 0 success; 1 some inputs failed (named on stderr), or `verify` found damaged shards (named); 2 a
usage, schema, config or expression error; 3 storage unusable (endpoint, credentials, permissions, bucket); 4 a
dataset problem (missing, unreadable manifest, locked by another writer, options that do not match it). Errors
are one line; -v adds the traceback."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from jetstore.cli import cache, convert, demo, export_weaver, inspect, k8s, schema, stats, train, verify
from jetstore.cli.common import Inline, add_verbosity
from jetstore.console import configure_logging, guarded
from jetstore.io import settings

COMMANDS = (convert, inspect, verify, schema, stats, export_weaver, train, k8s, cache, demo)  # in --help's order
LOG = logging.getLogger("jetstore.cli")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(list(sys.argv[1:] if argv is None else argv))
    if getattr(args, "passthrough", False):  # the trainer's options, its --help included
        args.arguments = rest
    elif rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    verbosity = args.verbose - args.quiet
    given = [getattr(args, name, {}) for name in ("storage_options", "input_storage_options")]
    configure_logging(verbosity, [s for options in given for s in settings.StorageOptions(options).secrets()])
    if any(isinstance(options, Inline) and settings.StorageOptions(options).secrets() for options in given):
        LOG.warning("jetstore: warning: credentials in --storage-options JSON are visible to every local user "
                    "(ps, /proc); use AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or --storage-options @FILE")
    return guarded(args.handler, args, verbosity=verbosity, extra=getattr(args, "extra", None))


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command (each module of ``COMMANDS`` adds its own)."""
    from jetstore.version import __version__

    parser = argparse.ArgumentParser(prog="jetstore", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"jetstore {__version__}")
    add_verbosity(parser, default=0)
    common = argparse.ArgumentParser(add_help=False)
    add_verbosity(common, default=argparse.SUPPRESS)  # also accepted after the command
    subparsers = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add(subparsers, common)
    return parser
