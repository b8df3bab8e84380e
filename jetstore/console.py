"""How a command talks to its user, for both spellings of every command (``jetstore ...``, ``python -m
jetstore.train``): jetstore's notices on stderr (``-q``, ``-v``), secrets redacted; expected failures as one line
(URLs without credentials) and their exit code (``errors.py``); a missing optional dependency named with the extra
that installs it."""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from jetstore.errors import JetstoreError
from jetstore.io import locations, redaction, storage_errors

VERBOSITY_LEVELS = {-1: logging.ERROR, 0: logging.INFO, 1: logging.INFO, 2: logging.DEBUG}
# optional modules → the extra that installs them (the core needs none of them)
EXTRAS = {"torch": "torch", "matplotlib": "plots", "mplhep": "plots", "hist": "plots", "weaver": "train",
          "tensorboard": "train", "sklearn": "train", "onnx": "train"}
_ROOT_LEVEL: list[int] = []  # the root logger's level before a -v command raised it, restored by the next command


class _StderrHandler(logging.StreamHandler):
    """A handler that writes to the current ``sys.stderr`` (also when it was replaced after set-up)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def configure_logging(verbosity: int, secrets: Sequence[str]) -> None:
    """jetstore's notices (the ``jetstore`` loggers) as bare lines on stderr at INFO; -q: errors only; -v: every
    library's INFO records with time and logger name, -vv: DEBUG. Secrets given as options never reach the
    output (botocore's debug logs print request headers)."""
    level = VERBOSITY_LEVELS[max(-1, min(2, verbosity))]
    handler = _StderrHandler()
    handler.setLevel(level)  # also for libraries that set their own loggers' levels (distributed)
    handler.addFilter(redaction.RedactingFilter(list(secrets)))
    handler.set_name("jetstore-cli")
    ours = logging.getLogger("jetstore")
    for logger in (ours, logging.getLogger()):  # a command may run several times in one process (tests, notebooks)
        for old in [h for h in logger.handlers if h.get_name() == "jetstore-cli"]:
            logger.removeHandler(old)
    ours.setLevel(level)
    root = logging.getLogger()
    if _ROOT_LEVEL:  # a -v command ran before in this process: every library's records end with it
        root.setLevel(_ROOT_LEVEL.pop())
    if verbosity > 0:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
        _ROOT_LEVEL.append(root.level)
        root.setLevel(level)
    else:
        handler.setFormatter(logging.Formatter("%(message)s"))
        ours.addHandler(handler)


def guarded(handler: Callable[[Any], int], args: Any, verbosity: int, extra: str | None = None) -> int:
    """Run a command; expected failures become one line on stderr and their exit code: a storage failure not
    caught on the way (``storage_errors.failure`` recognises it) is named after the command's dataset URL.
    ``extra``: the extra that the command needs as a whole (else the one that installs the missing module)."""
    logging_off = logging.root.manager.disable
    try:
        try:
            with _quiet_interrupts():
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
    finally:
        logging.disable(logging_off)


@contextlib.contextmanager
def _quiet_interrupts() -> Iterator[None]:
    """Ctrl-C while a command runs: what libraries log while unwinding it (a Dask cluster closed mid-task, a
    callback of distributed's racing the interrupt) is noise beside the one line that says how to resume, so
    logging is off from the signal on, until that line is printed. Python's own SIGINT handler otherwise."""
    if threading.current_thread() is not threading.main_thread() \
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        logging.disable(logging.CRITICAL)
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _urls(args: object) -> list[str]:
    """The URLs a command was given (inputs, output, datasets; every ``://`` word of the trainer's argv)."""
    given = [getattr(args, name, None) for name in ("output", "url", "files", "scheduler")]
    given += [*(getattr(args, "inputs", None) or ()), *(getattr(args, "urls", None) or ())]
    given += [word for word in getattr(args, "arguments", None) or () if "://" in word]
    return [url for url in given if isinstance(url, str) and "://" in url]
