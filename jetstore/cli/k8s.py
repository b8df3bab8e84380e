"""``jetstore k8s train|predict``: the Kubernetes Jobs of a training run, from the trainer's options."""

from __future__ import annotations

import argparse

from jetstore.cli.common import add_passthrough


def add(subparsers, common: argparse.ArgumentParser) -> None:
    add_passthrough(subparsers, "k8s", run, "the Kubernetes Jobs of a training run, from the trainer's options: "
                    "jetstore k8s train|predict ... > job.yaml (see jetstore k8s --help)")


def run(args: argparse.Namespace) -> int:
    from jetstore.train.k8s import main

    return main(args.arguments)
