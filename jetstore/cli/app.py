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
import traceback
from collections.abc import Callable, Sequence

from jetstore.cli import cache, convert, demo, export_weaver, inspect, k8s, schema, stats, train, verify
from jetstore.cli.common import Inline, add_verbosity
from jetstore.errors import JetstoreError
from jetstore.io import locations, redaction, settings, storage_errors

COMMANDS = (convert, inspect, verify, schema, stats, export_weaver, train, k8s, cache, demo)  # in --help's order
LOG = logging.getLogger("jetstore.cli")
VERBOSITY_LEVELS = {-1: logging.ERROR, 0: logging.INFO, 1: logging.INFO, 2: logging.DEBUG}
# optional modules → the extra that installs them (the core needs none of them)
EXTRAS = {"torch": "torch", "matplotlib": "plots", "mplhep": "plots", "hist": "plots", "weaver": "train",
          "tensorboard": "train", "sklearn": "train", "onnx": "train"}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(list(sys.argv[1:] if argv is None else argv))
    if getattr(args, "passthrough", False):  # the trainer's options, its --help included
        args.arguments = rest
    elif rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    verbosity = args.verbose - args.quiet
    given = [getattr(args, name, {}) for name in ("storage_options", "input_storage_options")]
    _configure_logging(verbosity, [s for options in given for s in settings.StorageOptions(options).secrets()])
    if any(isinstance(options, Inline) and settings.StorageOptions(options).secrets() for options in given):
        LOG.warning("jetstore: warning: credentials in --storage-options JSON are visible to every local user "
                    "(ps, /proc); use AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or --storage-options @FILE")
    return _guarded(args.handler, args, verbosity=verbosity, extra=getattr(args, "extra", None))


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


class _StderrHandler(logging.StreamHandler):
    """A handler that writes to the current ``sys.stderr`` (also when it was replaced after set-up)."""

    @property  # type: ignore[override]
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def _configure_logging(verbosity: int, secrets: Sequence[str]) -> None:
    """jetstore's notices (the ``jetstore`` loggers) as bare lines on stderr at INFO; -q: errors only; -v: every
    library's INFO records with time and logger name, -vv: DEBUG. Secrets given as options never reach the
    output (botocore's debug logs print request headers)."""
    level = VERBOSITY_LEVELS[max(-1, min(2, verbosity))]
    handler = _StderrHandler()
    handler.setLevel(level)  # also for libraries that set their own loggers' levels (distributed)
    handler.addFilter(redaction.RedactingFilter(list(secrets)))
    handler.set_name("jetstore-cli")
    ours = logging.getLogger("jetstore")
    for logger in (ours, logging.getLogger()):  # main() may run several times in one process (tests, notebooks)
        for old in [h for h in logger.handlers if h.get_name() == "jetstore-cli"]:
            logger.removeHandler(old)
    ours.setLevel(level)
    if verbosity > 0:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logging.getLogger().addHandler(handler)
        logging.getLogger().setLevel(level)
    else:
        handler.setFormatter(logging.Formatter("%(message)s"))
        ours.addHandler(handler)


def _guarded(handler: Callable[[object], int], args: object, verbosity: int, extra: str | None = None) -> int:
    """Run a command; expected failures become one line on stderr and their exit code: a storage failure not
    caught on the way (``storage_errors.failure`` recognises it) is named after the command's dataset URL. ``extra``:
    the extra that the command needs as a whole (else the one that installs the missing module)."""
    try:
        try:
            return handler(args)
        except (JetstoreError, ModuleNotFoundError, KeyboardInterrupt):
            raise
        except Exception as exc:
            url = getattr(args, "url", None) or next(iter(getattr(args, "urls", None) or ()), None) \
                or getattr(args, "output", None)  # the command's (first) dataset
            error = storage_errors.failure(exc, url) if isinstance(url, str) else None
            if error is None:
                raise
            raise error from exc
    except JetstoreError as exc:
        urls = _urls(args)  # whatever a message quotes of a URL, it shows without credentials
        if verbosity > 0:
            print(locations.scrub_urls(traceback.format_exc(), urls), end="", file=sys.stderr)
        print(f"jetstore: error: {locations.scrub_urls(str(exc), urls)}", file=sys.stderr)
        return exc.exit_code
    except ModuleNotFoundError as exc:
        missing = EXTRAS.get((exc.name or "").partition(".")[0])
        if missing is None:
            raise
        extra = extra or missing
        print(f"jetstore: error: this command needs {exc.name}, an optional dependency: "
              f"pip install 'jetstore[{extra}]'", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("jetstore: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


def _urls(args: object) -> list[str]:
    """The URLs a command was given (inputs, output, datasets; every ``://`` word of the trainer's argv)."""
    given = [getattr(args, name, None) for name in ("output", "url", "files", "scheduler")]
    given += [*(getattr(args, "inputs", None) or ()), *(getattr(args, "urls", None) or ())]
    given += [word for word in getattr(args, "arguments", None) or () if "://" in word]
    return [url for url in given if isinstance(url, str) and "://" in url]
