"""``jetstore train`` / ``python -m jetstore.train``: train a network on jetstore datasets, validate it every
epoch, predict with it or export it. Every option is a field of :class:`TrainOptions` (its default, its check and
its help); a bad value is one line and exit 2.

--predict and --export-onnx read the run's own options back from <output>/run.json: only what differs needs
to be given. A run folder is data, never code: the network file run.json names is imported only when it is named
again with -n, or with --trust-run. A network file (--network-config) is Python code that is imported and run,
as weaver does."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import sys
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from jetstore.arguments import HelpWithDefaults
from jetstore.errors import JetstoreError
from jetstore.io import storage_errors
from jetstore.train.options import RUN_FILE, TrainOptions, local_path, read_run

LOG = logging.getLogger("jetstore.train")


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one-line :class:`JetstoreError` s (exit 2), as every other bad option."""

    def error(self, message: str) -> NoReturn:
        raise JetstoreError(f"{message} (see jetstore train --help)")


def _argument(name: str, hint: Any, metadata: dict[str, Any]) -> tuple[tuple[str, ...], dict[str, Any]]:
    """The argparse flags and keywords of one field, from its type and metadata."""
    flags = metadata.get("flags", (f"--{name.replace('_', '-')}",))
    kwargs: dict[str, Any] = {"dest": name, "help": metadata.get("help")}
    kwargs.update({k: metadata[k] for k in ("choices", "metavar", "nargs", "const", "type") if k in metadata})
    optional = typing.get_origin(hint) in (typing.Union, types.UnionType)
    kind = next(a for a in typing.get_args(hint) if a is not type(None)) if optional else hint
    if kind is bool:
        kwargs["action"] = argparse.BooleanOptionalAction
    elif typing.get_origin(kind) is tuple:
        kwargs["action"] = "append"
    else:
        kwargs.setdefault("type", kind)
    return flags, kwargs


def build_parser(defaults: bool = True) -> argparse.ArgumentParser:
    """The parser of every :class:`TrainOptions` field; without ``defaults`` only given options are set (the
    ones that override a stored run)."""
    parser = _Parser(prog="jetstore train", description=__doc__, formatter_class=HelpWithDefaults,
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
    given ones; for training, the given ones over the defaults. Checked (one line, exit 2) either way."""
    build_parser().parse_args(argv)  # usage errors and --help, with the defaults shown
    given = vars(build_parser(defaults=False).parse_args(argv))
    base = TrainOptions()
    if given.get("predict") or given.get("export_onnx"):
        output = given.get("output", base.output)
        stored = read_run(output)
        if stored is not None:
            base = _trusted(stored, given, Path(output) / RUN_FILE)
    return dataclasses.replace(base, **given)


def _trusted(stored: TrainOptions, given: dict[str, Any], run_file: Path) -> TrainOptions:
    """A stored run's options, as data: its network file is used only when the command names it (-n) or says
    --trust-run; the local locations it names must exist (the message names run.json)."""
    if stored.network_config is not None and "network_config" not in given:
        if not given.get("trust_run"):
            raise JetstoreError(f"{run_file} names the network file {stored.network_config}: Python code, not "
                                f"imported from a run folder unasked; name it with -n {stored.network_config} "
                                "(or pass --trust-run)")
        LOG.info("importing the network file %s named by %s (--trust-run)", stored.network_config, run_file)
    needed = ["config"] if "config" not in given else []
    if "predict_data" not in given and "data" not in given and given.get("predict"):
        needed.append("data")
    for name in needed:
        value = getattr(stored, name)
        for location in value if isinstance(value, tuple) else (value,):
            path = None if location is None else local_path(location)
            if path is not None and not path.exists():
                raise JetstoreError(f"{run_file}: its --{name.replace('_', '-')} {location} does not exist here; "
                                    f"give --{name.replace('_', '-')}" + (" or --predict-data" if name == "data"
                                                                          else ""))
    return stored


def main(argv: Sequence[str] | None = None) -> int:
    """The command (logging is set up by ``jetstore.cli.app.main``, the one entry point of both spellings)."""
    from jetstore.train.export import export_onnx
    from jetstore.train.loop import train
    from jetstore.train.predict import predict

    options = parse_options(sys.argv[1:] if argv is None else argv)
    # storage failures not named on the way (checkpoints name theirs) are named after the data
    with storage_errors.access(options.data[0] if options.data else options.output):
        if options.export_onnx:
            summary = export_onnx(options, options.export_onnx)
        elif options.predict:
            summary = predict(options, options.predict)
        else:
            summary = train(options)
    if int(os.environ.get("RANK", 0)) == 0:  # under torchrun, one summary
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
