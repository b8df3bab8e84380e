"""Exception types: every user-facing failure names the file, branch, key or endpoint involved, and maps
to one exit code of the command line (see ``docs/guide.md``)."""

import re
from dataclasses import dataclass
from typing import Any

NAME_LIKE = re.compile(r"[A-Za-z0-9_.+\-/ ]{1,64}")


def echo(value: Any) -> str:
    """How a message shows a value read from a user's file: numbers and short name-like text as they are,
    anything else only by its type and size, so an error never prints a file's contents."""
    if value is None or isinstance(value, bool | int | float):
        return repr(value)
    if isinstance(value, str):
        return repr(value) if NAME_LIKE.fullmatch(value) else f"<text of {len(value)} characters, not shown>"
    if isinstance(value, list | tuple | dict):
        return f"<a {type(value).__name__} of {len(value)} items>"
    return f"<a {type(value).__name__}>"


class JetstoreError(Exception):
    """Base class for errors shown to users as one clear message (no traceback)."""

    exit_code = 2


class SchemaError(JetstoreError):
    """A schema or config is invalid; the message names the offending key."""


class ExpressionError(SchemaError):
    """An expression uses something the safe evaluator does not allow, or fails to evaluate."""


class InputError(JetstoreError):
    """An input file cannot be converted (missing, not ROOT, truncated, missing or mistyped branch)."""

    exit_code = 1

    def __init__(self, url: str, reason: str):
        super().__init__(f"{url}: {reason}")
        self.url = url
        self.reason = reason

    def __reduce__(self):
        return (type(self), (self.url, self.reason))


class DatasetError(JetstoreError):
    """A dataset is missing, incomplete, corrupt or inconsistent with the request."""

    exit_code = 4


class LeaseError(DatasetError):
    """Another conversion holds the dataset's write lease (or this one lost it)."""


class StorageError(JetstoreError):
    """Storage cannot be used: endpoint unreachable, no or wrong credentials, access denied, no bucket."""

    exit_code = 3


@dataclass(frozen=True)
class TaskFailure:
    """An expected failure returned (not raised) by a Dask task, so workers do not log it as a crash."""

    url: str
    reason: str
    storage: bool = False
