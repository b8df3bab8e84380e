"""``jetstore train``: the trainer (``jetstore.train``), with its own options (``jetstore train --help``)."""

from __future__ import annotations

import argparse

from jetstore.cli.common import add_passthrough


def add(subparsers, common: argparse.ArgumentParser) -> None:
    add_passthrough(subparsers, "train", run, "train a network (the built-in ParT or a weaver network file), predict "
                    "with it, export it (see jetstore train --help)")


def run(args: argparse.Namespace) -> int:
    from jetstore.train.cli import main

    return main(args.arguments)
