"""Reading what users and other processes hand jetstore, safely: local files opened without blocking (a named
pipe or a device is refused before anything waits on it), JSON and YAML documents bounded in size and nesting
depth (a document nested 10^5 levels deep is refused in one line, not with a RecursionError), YAML without
aliases (no alias bomb). Every JSON and YAML reader of jetstore goes through here: manifests, commit records,
leases, stats, schemas, configs, storage options.

Errors are :class:`DocumentError` (a ``ValueError``) saying what is wrong; callers name the file and turn it
into their kind of error (a dataset's file: ``DatasetError``; a user's schema or config: ``SchemaError``).
"""

from __future__ import annotations

import json
import os
import re
import stat
from typing import IO, Any

import numpy as np
import yaml

MAX_DEPTH = 64  # nesting levels of a JSON or YAML document (jetstore's own are at most ~6 deep)
MAX_JSON_BYTES = 512 << 20  # a manifest of ~800,000 shards
MAX_YAML_BYTES = 16 << 20  # a schema or config (weaver's are a few kB)
KINDS = {stat.S_ISDIR: "a directory", stat.S_ISFIFO: "a named pipe (FIFO)", stat.S_ISSOCK: "a socket",
         stat.S_ISCHR: "a character device", stat.S_ISBLK: "a block device"}
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'[]{}"')
_ESCAPE = re.compile(rb"\\.", re.S)
DEPTH_CHUNK = 1 << 20


class DocumentError(ValueError):
    """A file or document jetstore will not read: not a regular file, too large, nested too deeply, or not
    valid JSON / YAML; the message says which (the caller names the file)."""


# ---------------------------------------------------------------- local files


def open_regular(path: str | os.PathLike) -> IO[bytes]:
    """``path`` opened for reading bytes, refused unless it is a regular file. The file is opened without
    blocking and its kind checked on the open descriptor, so a FIFO never blocks and nothing can be swapped in
    between the check and the read. Raises ``FileNotFoundError`` / ``PermissionError`` as ``open`` does."""
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        mode = os.fstat(descriptor).st_mode
        if not stat.S_ISREG(mode):
            kind = next((name for test, name in KINDS.items() if test(mode)), "not a regular file")
            raise DocumentError(f"is {kind}, not a file")
        os.set_blocking(descriptor, True)
        return os.fdopen(descriptor, "rb")
    except BaseException:
        os.close(descriptor)
        raise


def read_regular(path: str | os.PathLike, limit: int) -> bytes:
    """The bytes of the regular file ``path`` (see :func:`open_regular`), refused when over ``limit``."""
    with open_regular(path) as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise DocumentError(f"is larger than {limit:,} bytes")
    return data


# ---------------------------------------------------------------- JSON


def json_depth(data: bytes | str) -> int:
    """How deeply the arrays and objects of a JSON text nest (brackets inside strings not counted), found
    without parsing: C-speed byte operations, so a 135 MB manifest costs a fraction of its parse."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
    if b"\\" in raw:
        raw = _ESCAPE.sub(b"", raw)
    skeleton = raw.translate(None, _NOT_STRUCTURE)  # brackets and quotes only
    level = deepest = quotes = 0
    for start in range(0, len(skeleton), DEPTH_CHUNK):  # in chunks: a few MB of temporaries at most
        part = np.frombuffer(skeleton, dtype=np.uint8, count=min(DEPTH_CHUNK, len(skeleton) - start), offset=start)
        quoted = (np.cumsum(part == ord('"'), dtype=np.int64) + quotes) % 2 == 1  # inside a string
        steps = np.where(quoted | (part == ord('"')), 0,
                         np.where((part == ord("[")) | (part == ord("{")), 1, -1)).astype(np.int32)
        running = np.cumsum(steps) + level
        deepest, level = max(deepest, int(running.max())), int(running[-1])
        quotes += int(np.count_nonzero(part == ord('"')))
    return deepest


def load_json(data: bytes | str, limit: int = MAX_JSON_BYTES) -> Any:
    """Parse a JSON document of at most ``limit`` bytes and :data:`MAX_DEPTH` levels."""
    if len(data) > limit:
        raise DocumentError(f"larger than {limit:,} bytes")
    if json_depth(data) > MAX_DEPTH:
        raise DocumentError(f"not valid JSON here (nested deeper than {MAX_DEPTH} levels)")
    try:
        return json.loads(data)
    except json.JSONDecodeError as exc:
        raise DocumentError(f"not valid JSON ({exc})") from None
    except UnicodeDecodeError:
        raise DocumentError("not valid JSON (not UTF-8 text)") from None
    except RecursionError:  # not reached when the count above holds; kept as the parser's own bound
        raise DocumentError(f"not valid JSON here (nested deeper than {MAX_DEPTH} levels)") from None


# ---------------------------------------------------------------- YAML


class _SafeLoader(yaml.SafeLoader):
    """Safe YAML without aliases, nested at most :data:`MAX_DEPTH` levels: ``*name`` references are refused
    where they are met, before anything is built, so an alias bomb (nested references that expand
    exponentially) cannot exhaust memory; depth is counted as nodes are composed (the composer recurses)."""

    depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            raise yaml.composer.ComposerError(None, None, "YAML aliases (*name) are not supported; write the value out",
                                              self.peek_event().start_mark)
        if self.depth >= MAX_DEPTH:
            raise yaml.composer.ComposerError(None, None, f"nested deeper than {MAX_DEPTH} levels",
                                              self.peek_event().start_mark)
        self.depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def load_yaml(text: str) -> Any:
    """Parse a YAML document (safe, no aliases, bounded depth); errors give the line and column, never the
    file's content."""
    if len(text) > MAX_YAML_BYTES:
        raise DocumentError(f"larger than {MAX_YAML_BYTES:,} bytes")
    try:
        return yaml.load(text, Loader=_SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        place = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise DocumentError(f"invalid YAML{place}: {getattr(exc, 'problem', None) or 'parse error'}") from None
