"""What the commands share: how a command is added, argument types and checks, help texts, the datasets named
on the command line, a dataset's summary."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jetstore.arguments import HelpWithDefaults
from jetstore.documents import DocumentError, load_json, read_regular
from jetstore.errors import JetstoreError
from jetstore.io import settings

STORAGE_OPTIONS_HELP = ("fsspec options for the dataset's storage (e.g. endpoint_url), as JSON or @FILE (a JSON file); "
                        "credentials: from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or @FILE, never inline (the "
                        "command line is visible to every local user)")
DATASETS_HELP = "dataset URL, or NAME:URL to name its sample (several: read as one, like weaver's --data-train groups)"
MAX_OPTIONS_BYTES = 1 << 20


def add_command(subparsers: Any, common: argparse.ArgumentParser, name: str,
                run: Callable[[argparse.Namespace], int] | None, **kwargs: Any) -> argparse.ArgumentParser:
    """A command's parser (with -v / -q, help showing defaults); ``run(args)`` is its handler (an exit code;
    None: a group of subcommands)."""
    parser = subparsers.add_parser(name, parents=[common], formatter_class=HelpWithDefaults, **kwargs)
    if run is not None:
        parser.set_defaults(handler=run)
    return parser


def add_passthrough(subparsers: Any, name: str, run: Callable[[argparse.Namespace], int], help: str) -> None:
    """A command whose arguments all go to ``run`` as ``args.arguments`` (the trainer's own options, its own
    ``--help``); jetstore's -v / -q go before the command's name."""
    subparsers.add_parser(name, add_help=False, help=help).set_defaults(handler=run, passthrough=True, extra="train")


def add_verbosity(parser: argparse.ArgumentParser, default: object) -> None:
    parser.add_argument("-v", "--verbose", action="count", default=default,
                        help="more log output (-vv: debug); tracebacks with errors")
    parser.add_argument("-q", "--quiet", action="count", default=default, help="errors only, no progress bars")


def add_datasets(parser: argparse.ArgumentParser) -> None:
    """The datasets a command reads (read as one) and their storage options."""
    parser.add_argument("urls", nargs="+", metavar="DATASET", help=DATASETS_HELP)
    add_storage_options(parser)


def add_storage_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--storage-options", type=storage_options, default={}, metavar="JSON|@FILE",
                        help=STORAGE_OPTIONS_HELP)


def open_datasets(args: argparse.Namespace):
    """The datasets named on the command line, as one collection."""
    from jetstore.dataset.collection import Collection

    return Collection.open(args.urls, args.storage_options)


def print_summary(url: str, manifest, sample: str | None = None) -> None:
    print(f"dataset {url}" + (f" (sample {sample})" if sample else ""))
    print(f"  format   {manifest.format} (manifest v{manifest.format_version}, schema {manifest.schema['name']} "
          f"{manifest.schema_hash})")
    kinds = ", ".join(sorted({i.kind for i in manifest.inputs}))
    print(f"  jets     {manifest.n_jets:,} in {len(manifest.shards)} shard(s) from {len(manifest.inputs)} input(s)"
          + (f" ({kinds})" if kinds else "") + (f"; version {manifest.version}" if manifest.version > 1 else ""))
    print(f"  bytes    {manifest.bytes:,} ({manifest.bytes / max(manifest.n_jets, 1):.0f} per jet)")
    counts = manifest.class_counts
    total = max(sum(counts.values()), 1)
    print("  classes  " + ", ".join(f"{k} {v:,} ({100 * v / total:.1f}%)" for k, v in counts.items()))
    nodes = manifest.node_counts
    if nodes:
        print("  nodes    " + ", ".join(f"{k} {v:,} ({v / max(manifest.n_jets, 1):.1f} per jet)"
                                      for k, v in nodes.items()))
    if manifest.skipped_inputs:
        print(f"  skipped  {len(manifest.skipped_inputs)} bad input(s): {', '.join(manifest.skipped_inputs)}")


def positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be a positive integer")
    return value


def fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be a fraction in [0, 1), not {value:g}")
    return value


def output_file(path: str, option: str) -> None:
    """A file the command will write, checked before any work: not a folder, FIFO or device (writing to a FIFO
    blocks), and in a folder that exists."""
    target = Path(path)
    if target.is_dir() or (target.exists() and not target.is_file()):
        kind = "a folder" if target.is_dir() else "not a regular file"
        raise JetstoreError(f"{option} {path}: is {kind}; give the name of a file to write")
    if not target.absolute().parent.is_dir():
        raise JetstoreError(f"{option} {path}: there is no folder {target.absolute().parent}")


def output_folder(path: str, option: str) -> None:
    """A folder the command will write into (made if absent), checked before any work: not a file."""
    target = Path(path)
    if target.exists() and not target.is_dir():
        raise JetstoreError(f"{option} {path}: is a file; give a folder")


class Inline(dict):
    """Storage options given as JSON on the command line (their secrets show in the process list)."""


def storage_options(text: str) -> dict:
    """``--storage-options``: a JSON object, or ``@FILE`` holding one (a regular file: no FIFO, at most 1 MiB);
    checked for the types fsspec expects."""
    try:
        value = load_json(read_regular(text[1:], MAX_OPTIONS_BYTES) if text.startswith("@") else text)
        problem = settings.options_problem(value)
    except DocumentError as exc:
        raise argparse.ArgumentTypeError(f"{text[1:]} {exc}" if text.startswith("@") else str(exc)) from None
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"cannot read {text[1:]}: {exc.strerror}") from None
    if problem is not None:
        raise argparse.ArgumentTypeError(problem)
    return value if text.startswith("@") else Inline(value)
