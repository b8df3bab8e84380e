"""Where data lives, as URLs: their protocol, local paths made absolute, a dataset URL accepted or refused, and
URLs without their credentials (user-info, a presigned URL's query), as they may be stored and shown."""

from __future__ import annotations

import os
import re
import urllib.parse
from collections.abc import Iterable

from jetstore.errors import JetstoreError


def protocol(url: str) -> str:
    """The fsspec protocol of ``url`` ('file' for plain paths)."""
    match = re.match(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://", url)
    return match.group(1).lower() if match else "file"


def is_local(url: str) -> bool:
    return protocol(url) in ("file", "local")


def absolute(url: str) -> str:
    """A local path made absolute (``~`` expanded, ``file://`` dropped); URLs as they are. Dask workers run in
    other directories, so every path handed to them is absolute."""
    if not is_local(url):
        return url
    return os.path.abspath(os.path.expanduser(url.removeprefix("file://")))


def public_url(url: str) -> str:
    """``url`` as it may be stored and shown: without user-info (``user:token@``), query string (a presigned
    URL's signature) or fragment. Local paths as they are."""
    if is_local(url):
        return url
    parts = urllib.parse.urlsplit(url)
    if not (parts.username or parts.password or parts.query or parts.fragment):
        return url
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    return urllib.parse.urlunsplit((parts.scheme, f"{host}:{parts.port}" if parts.port else host, parts.path, "", ""))


def dataset_location(url: str, write: bool = False) -> str:
    """A dataset's URL made absolute (:func:`absolute`), or a one-line :class:`~jetstore.errors.JetstoreError`
    (exit 2): when it is empty or names no folder or bucket, or carries credentials or a query (refused, and
    named without them: user-info in a URL sits in the process list for every local user, and s3fs would take
    ``key:secret@bucket`` for a bucket name; credentials come from the environment, a Kubernetes secret or
    ``--storage-options @FILE``).
    ``write``: the output of a conversion, which must also not be the filesystem's root or an existing file."""
    if not isinstance(url, str) or not url.strip() or not url.split("://", 1)[-1].strip("/"):
        raise JetstoreError(f"the dataset URL {url!r} names no folder; give a folder or an s3://bucket/prefix URL"
                            if isinstance(url, str) and url.strip() else
                            "the dataset URL is empty; give a folder or an s3://bucket/prefix URL")
    if public_url(url) != url:
        raise JetstoreError(f"{public_url(url)}: refusing a dataset URL with credentials or a query in it (any "
                           "local user can read a command line); set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                           "or pass --storage-options @FILE")
    location = absolute(url)
    if write and is_local(location) and os.path.lexists(location) and not os.path.isdir(location):
        raise JetstoreError(f"{location}: is a file, not a folder; a dataset is written into a folder of its own")
    return location


def url_secrets(url: str) -> list[str]:
    """The parts of ``url`` that :func:`public_url` removes (to scrub them from messages)."""
    if is_local(url):
        return []
    parts = urllib.parse.urlsplit(url)
    found = [url] if public_url(url) != url else []
    values = [value for _, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)]
    candidates = (parts.password, parts.query, urllib.parse.unquote(parts.query), *values,
                  *(urllib.parse.quote(v, safe="") for v in values))
    found += sorted({p for p in candidates if p and len(p) >= 4}, key=len, reverse=True)
    return found


def scrub_urls(text: str, urls: Iterable[str]) -> str:
    """``text`` with every URL of ``urls`` in its public form and their secrets masked."""
    for url in urls:
        for secret in url_secrets(url):
            text = text.replace(secret, public_url(url) if secret == url else "***")
    return text


def is_pattern(url: str) -> bool:
    """Whether ``url`` is a glob: ``*``, ``?`` or ``[`` in a path or in an object-store URL; never for HTTP(S),
    whose ``?`` starts a query (a presigned URL's signature)."""
    return protocol(url) not in ("http", "https") and any(ch in url for ch in "*?[")
