"""``jetstore train`` / ``python -m jetstore.train``: train a network on jetstore datasets, validate it every
epoch, predict with it or export it. Every option is a field of :class:`TrainOptions` (its defaults and help).

--predict and --export-onnx read the run's own options back from <output>/run.json: only what differs needs
to be given. A network file (--network-config) is Python code that is imported and run, as weaver does."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import sys
import types
import typing
from collections.abc import Sequence
from typing import Any

from jetstore.store import storage

from .options import TrainOptions, read_run

LOG = logging.getLogger("jetstore.train")


def _argument(name: str, hint: Any, metadata: dict[str, Any]) -> tuple[tuple[str, ...], dict[str, Any]]:
    """The argparse flags and keywords of one field, from its type and metadata."""
    flags = metadata.get("flags", (f"--{name.replace('_', '-')}",))
    kwargs: dict[str, Any] = {"dest": name, "help": metadata.get("help")}
    kwargs.update({k: metadata[k] for k in ("choices", "metavar", "nargs", "const") if k in metadata})
    optional = typing.get_origin(hint) in (typing.Union, types.UnionType)
    kind = next(a for a in typing.get_args(hint) if a is not type(None)) if optional else hint
    if kind is bool:
        kwargs["action"] = argparse.BooleanOptionalAction
    elif typing.get_origin(kind) is tuple:
        kwargs["action"] = "append"
    else:
        kwargs["type"] = kind
    return flags, kwargs


def build_parser(defaults: bool = True) -> argparse.ArgumentParser:
    """The parser of every :class:`TrainOptions` field; without ``defaults`` only given options are set (the
    ones that override a stored run)."""
    from jetstore.cli import _HelpWithDefaults

    parser = argparse.ArgumentParser(prog="jetstore train", description=__doc__, formatter_class=_HelpWithDefaults,
                                     argument_default=None if defaults else argparse.SUPPRESS)
    hints = typing.get_type_hints(TrainOptions)
    for item in dataclasses.fields(TrainOptions):
        flags, kwargs = _argument(item.name, hints[item.name], dict(item.metadata))
        if defaults and kwargs.get("action") != "append":  # an appended option starts empty, not at its default
            kwargs["default"] = item.default
        parser.add_argument(*flags, **kwargs)
    return parser


def parse_options(argv: Sequence[str]) -> TrainOptions:
    """The options of this command: for --predict / --export-onnx, the stored run's options overridden by the
    given ones; for training, the given ones over the defaults."""
    build_parser().parse_args(argv)  # usage errors and --help, with the defaults shown
    given = {k: v for k, v in vars(build_parser(defaults=False).parse_args(argv)).items()}
    base = TrainOptions()
    if given.get("predict") or given.get("export_onnx"):
        base = read_run(given.get("output", base.output)) or base
    return dataclasses.replace(base, **given)


def main(argv: Sequence[str] | None = None) -> int:
    from .export import export_onnx
    from .loop import train
    from .predict import predict

    options = parse_options(sys.argv[1:] if argv is None else argv)
    if not logging.getLogger().handlers and not LOG.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("jetstore train: %(message)s"))
        LOG.addHandler(handler)
        LOG.setLevel(logging.INFO)
    # storage failures not named on the way (checkpoints name theirs) are named after the data
    with storage.access(options.data[0] if options.data else options.output):
        if options.export_onnx:
            summary = export_onnx(options, options.export_onnx)
        elif options.predict:
            summary = predict(options, options.predict)
        else:
            summary = train(options)
    json.dump(strict(summary), sys.stdout, indent=1, allow_nan=False)
    print()
    return 0


def strict(value: Any) -> Any:
    """JSON-ready: a rejection no background jet allows to measure (infinite) or an AUC without jets of both kinds
    (NaN) is null."""
    if isinstance(value, dict):
        return {k: strict(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [strict(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
