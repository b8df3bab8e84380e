"""Where datasets live: fsspec filesystems for local paths and S3 (CEPH RGW, custom endpoints).

S3 settings come from the standard ``AWS_*`` environment variables or explicit storage options. Two
settings make CEPH RGW work where botocore's defaults fail: path-style addressing and
``request_checksum_calculation = when_required`` (RGW rejects aws-chunked uploads with CRC trailers
with HTTP 411). Secrets never leave :class:`StorageOptions` in printable form, URLs are stored and shown
without their credentials (:func:`public_url`), and log records are redacted (:class:`RedactingFilter`).
What a writer does to a dataset goes through ``jetstore.store.backend``.
"""

from __future__ import annotations

import contextlib
import copy
import errno
import logging
import os
import re
import urllib.parse
from collections.abc import Iterator, Mapping
from typing import Any

import fsspec
import fsspec.asyn

from jetstore.documents import DocumentError, read_regular
from jetstore.errors import JetstoreError, StorageError

SECRET_KEYS = frozenset({"key", "secret", "token", "password", "aws_access_key_id", "aws_secret_access_key",
                         "aws_session_token", "session_token"})
S3_CONFIG = {
    "s3": {"addressing_style": "path"},
    "request_checksum_calculation": "when_required",
    "response_checksum_validation": "when_required",
    "retries": {"max_attempts": 8, "mode": "adaptive"},  # rides out gateway restarts and 503s mid-run
    "connect_timeout": 5,
    "read_timeout": 120,
}
PROBE_CONFIG = {"retries": {"max_attempts": 2, "mode": "standard"}, "connect_timeout": 3}  # checks before a run


class StorageOptions(dict):
    """fsspec storage options whose printed form hides credentials (also inside Dask task reprs)."""

    def __repr__(self) -> str:
        return repr(_redacted(self))

    __str__ = __repr__

    def secrets(self) -> list[str]:
        """Every secret value held, for scrubbing messages."""
        found: list[str] = []
        _collect_secrets(self, found)
        return found

    def scrub(self, text: str) -> str:
        """Mask any secret held here that appears in ``text`` (see :func:`mask_secrets`)."""
        return mask_secrets(text, self.secrets())


MIN_SECRET = 4  # shorter values are not masked: "a" as a key would turn "cannot read" into "c***nnot re***d"
_SECRET_EDGE = "A-Za-z0-9"


def mask_secrets(text: str, secrets: list[str]) -> str:
    """``text`` with every occurrence of the secrets (of at least :data:`MIN_SECRET` characters) replaced by
    ``***``, longest first; only where they stand alone, not inside a longer run of letters and digits."""
    for secret in sorted({s for s in secrets if len(s) >= MIN_SECRET}, key=len, reverse=True):
        if secret in text:
            text = re.sub(rf"(?<![{_SECRET_EDGE}]){re.escape(secret)}(?![{_SECRET_EDGE}])", "***", text)
    return text


# parts of signed requests and presigned URLs; a signature in hex (SigV4: also "Signature:" and a line break in
# botocore's debug log) or in base64 (SigV2)
SIGNED = re.compile(r"(Credential=)[^/,\s'\"]+|(Signature(?:=|:\s*))[0-9a-zA-Z%+/=]{16,}"
                    r"|(X-Amz-Security-Token['\"]?[=:]\s*['\"]?)[^\s'\",]+")


class RedactingFilter(logging.Filter):
    """Masks credentials in every log record (debug logs of botocore print request headers): the given
    secrets, those of the ``AWS_*`` environment, and the access key id, signature and session token of
    signed requests."""

    def __init__(self, secrets: list[str] | None = None, environ: Mapping[str, str] = os.environ):
        super().__init__()
        found = [environ.get(name, "") for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")]
        self.secrets = [*found, *(secrets or [])]

    def redact(self, text: str) -> str:
        text = mask_secrets(text, self.secrets)
        return SIGNED.sub(lambda m: (m.group(1) or m.group(2) or m.group(3)) + "***", text)

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = self.redact(record.getMessage()), None
        if record.exc_info:
            record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


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


def scrub_urls(text: str, urls) -> str:
    """``text`` with every URL of ``urls`` in its public form and their secrets masked."""
    for url in urls:
        for secret in url_secrets(url):
            text = text.replace(secret, public_url(url) if secret == url else "***")
    return text


def is_pattern(url: str) -> bool:
    """Whether ``url`` is a glob: ``*``, ``?`` or ``[`` in a path or in an object-store URL; never for HTTP(S),
    whose ``?`` starts a query (a presigned URL's signature)."""
    return protocol(url) not in ("http", "https") and any(ch in url for ch in "*?[")


OPTION_TYPES = {"client_kwargs": dict, "config_kwargs": dict, "s3_additional_kwargs": dict, "endpoint_url": str,
                "key": str, "secret": str, "token": str, "anon": bool, "use_ssl": bool}


def options_problem(options: Any) -> str | None:
    """What is wrong with storage options (None: nothing): they must be a JSON object, and the options fsspec's
    S3 filesystem reads as objects, text or flags must have that type (``{"client_kwargs": 5}`` otherwise
    fails deep inside s3fs)."""
    if not isinstance(options, Mapping):
        return "storage options must be a JSON object"
    for key, kind in OPTION_TYPES.items():
        if key in options and not isinstance(options[key], kind):
            return f"storage option '{key}' must be {TYPE_NAMES[kind]}, not {type(options[key]).__name__}"
    return None


TYPE_NAMES = {dict: "a JSON object", str: "text", bool: "true or false"}


def resolve_storage_options(url: str, user: Mapping[str, Any] | None = None) -> StorageOptions:
    """Storage options for ``url``: environment defaults for S3, deep-merged with ``user`` options (refused
    when malformed: a :class:`~jetstore.errors.JetstoreError`, exit 2)."""
    problem = options_problem(user or {})
    if problem is not None:
        raise JetstoreError(problem)
    options: dict[str, Any] = {}
    if protocol(url) in ("s3", "s3a"):
        options = s3_options_from_environment()
    merged = _deep_merge(options, dict(user or {}))
    return StorageOptions(merged)


def s3_options_from_environment(environ: Mapping[str, str] = os.environ) -> dict[str, Any]:
    """s3fs options from ``AWS_*`` variables: endpoint, credentials, CA bundle, RGW-safe client config."""
    # no cached listings: other processes write the same prefixes (a cached listing hides their objects)
    options: dict[str, Any] = {"config_kwargs": copy.deepcopy(S3_CONFIG), "use_listings_cache": False}
    endpoint = environ.get("AWS_ENDPOINT_URL_S3") or environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        options["endpoint_url"] = endpoint
    if environ.get("AWS_ACCESS_KEY_ID") and environ.get("AWS_SECRET_ACCESS_KEY"):
        options["key"] = environ["AWS_ACCESS_KEY_ID"]
        options["secret"] = environ["AWS_SECRET_ACCESS_KEY"]
        if environ.get("AWS_SESSION_TOKEN"):
            options["token"] = environ["AWS_SESSION_TOKEN"]
    client_kwargs: dict[str, Any] = {}
    if environ.get("AWS_DEFAULT_REGION") or environ.get("AWS_REGION"):
        client_kwargs["region_name"] = environ.get("AWS_REGION") or environ["AWS_DEFAULT_REGION"]
    if environ.get("AWS_CA_BUNDLE"):
        client_kwargs["verify"] = environ["AWS_CA_BUNDLE"]
    if client_kwargs:
        options["client_kwargs"] = client_kwargs
    return options


def filesystem(url: str, options: Mapping[str, Any] | None = None) -> tuple[fsspec.AbstractFileSystem, str]:
    """The fsspec filesystem and path (no protocol, no trailing slash) for ``url``. The filesystem gets a copy
    of ``options``: botocore rewrites the retry settings it is given, and changed options would make the next
    call another filesystem, with another client."""
    fs, path = fsspec.core.url_to_fs(url, **copy.deepcopy(dict(options or {})))
    return fs, path.rstrip("/")


def read_object(fs: fsspec.AbstractFileSystem, path: str, limit: int) -> bytes:
    """The bytes of one file or object of at most ``limit`` bytes (a :class:`~jetstore.documents.DocumentError`
    when larger, or when a local path is not a regular file: a FIFO never blocks); ``FileNotFoundError`` when
    absent. A remote object's size is asked first (an object too large is never fetched), then at most
    ``limit + 1`` of its bytes are read (it may have grown meanwhile)."""
    if "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)):
        return read_regular(path, limit)
    if fs.size(path) > limit:
        raise DocumentError(f"is larger than {limit:,} bytes")
    data = fs.cat_file(path, start=0, end=limit + 1)
    if len(data) > limit:
        raise DocumentError(f"is larger than {limit:,} bytes")
    return data


def list_files(fs: fsspec.AbstractFileSystem, path: str) -> dict[str, int]:
    """Relative path → size for every file under ``path`` (a single file maps '' → size)."""
    if not fs.isdir(path):
        return {"": fs.size(path)}
    found = fs.find(path, detail=True)
    prefix = path.rstrip("/") + "/"
    return {name[len(prefix):]: int(info["size"]) for name, info in found.items()}


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _deep_merge(dict(out[key]), dict(value))
        else:
            out[key] = value
    return out


def _redacted(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: ("***" if k in SECRET_KEYS and v else _redacted(v)) for k, v in value.items()}
    return value


def _collect_secrets(value: Any, found: list[str]) -> None:
    if isinstance(value, Mapping):
        for key, item in value.items():
            if key in SECRET_KEYS and isinstance(item, str) and item:
                found.append(item)
            else:
                _collect_secrets(item, found)


# ---------------------------------------------------------------- storage failures

DENIED = {"AccessDenied", "403", "Forbidden", "SignatureDoesNotMatch", "InvalidAccessKeyId", "AllAccessDisabled"}
UNREACHABLE = {"EndpointConnectionError", "ConnectTimeoutError", "ClientConnectorError", "ConnectionRefusedError",
               "gaierror", "ServerDisconnectedError", "ConnectionClosedError", "ClientOSError",
               "ClientPayloadError"}  # the last: a response cut short, the server gone mid-body
TLS = {"SSLError", "SSLCertVerificationError", "ClientConnectorSSLError", "ClientConnectorCertificateError"}


def missing_bucket(url: str, bucket: str, where: str) -> StorageError:
    return StorageError(f"{url}: bucket '{bucket}' does not exist at {where}; create it first")


def endpoint(url: str, options: Mapping[str, Any] | None) -> str:
    """Where ``url`` lives, for messages: the S3 endpoint (or AWS), or "local disk"."""
    if is_local(url):
        return "local disk"
    return str((options or {}).get("endpoint_url") or os.environ.get("AWS_ENDPOINT_URL_S3")
               or os.environ.get("AWS_ENDPOINT_URL") or "AWS S3")


def failure(exc: BaseException, url: str, options: Mapping[str, Any] | None = None) -> StorageError | None:
    """The :class:`StorageError` an exception stands for (one line naming the endpoint, bucket or object
    and the likely fix), or None when it is not a storage failure."""
    if isinstance(exc, StorageError):
        return exc
    where = endpoint(url, options)
    chain: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and len(chain) < 10:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    names = {type(e).__name__ for e in chain}
    codes = {str(getattr(e, "response", {}).get("Error", {}).get("Code")) for e in chain if hasattr(e, "response")}
    statuses = {getattr(e, "response", {}).get("ResponseMetadata", {}).get("HTTPStatusCode") for e in chain}
    scrub = StorageOptions(options or {}).scrub
    if names & {"NoCredentialsError", "PartialCredentialsError", "CredentialRetrievalError"}:
        return StorageError(f"{url}: no credentials for {where}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                            "(or mount the Kubernetes secret), or pass --storage-options")
    if names & TLS:
        return StorageError(f"{url}: the TLS handshake with {where} failed: an http:// endpoint given as https://, "
                            "or a certificate the CA bundle (AWS_CA_BUNDLE) does not trust")
    if names & UNREACHABLE or any(isinstance(e, ConnectionError) for e in chain):
        return StorageError(f"{url}: cannot reach {where}; check the endpoint URL (AWS_ENDPOINT_URL) and the network")
    if names & {"ReadTimeoutError", "ServerTimeoutError", "TimeoutError"}:
        return StorageError(f"{url}: {where} did not answer in time; is it overloaded? A rerun resumes")
    if codes & {"NoSuchBucket"}:
        return missing_bucket(url, url.split("://", 1)[-1].split("/", 1)[0], where)
    if codes & DENIED or (isinstance(exc, PermissionError) and not is_local(url)):
        code = sorted(codes & DENIED)[0] if codes & DENIED else "403"
        return StorageError(f"{url}: access denied by {where} ({code}); check the credentials and their "
                            "permissions on the bucket")
    if any(isinstance(s, int) and s >= 500 for s in statuses):
        return StorageError(f"{url}: {where} kept failing ({', '.join(sorted(c for c in codes if c != 'None'))}) "
                            "after retries; an outage? A rerun resumes where this one stopped")
    if is_local(url) and isinstance(exc, OSError) and exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS,
                                                                     errno.ENOSPC, errno.EDQUOT):
        return StorageError(f"{url}: {scrub(os.strerror(exc.errno)).lower()} ({exc.filename or url})")
    return None


@contextlib.contextmanager
def access(url: str, options: Mapping[str, Any] | None = None) -> Iterator[None]:
    r"""Run storage operations on ``url``; storage failures become one-line :class:`StorageError`\ s."""
    try:
        yield
    except Exception as exc:
        error = failure(exc, url, options)
        if error is None or error is exc:
            raise
        raise error from None


def probe_options(options: Mapping[str, Any]) -> StorageOptions:
    """Options for checks before a run: few retries and a short connect timeout, so a wrong endpoint
    fails in seconds."""
    out = StorageOptions(copy.deepcopy(dict(options)))
    if "config_kwargs" in out:
        out["config_kwargs"] = _deep_merge(out["config_kwargs"], PROBE_CONFIG)
        out.update(skip_instance_cache=True, use_listings_cache=False)  # a fresh look, not a cached listing
    return out
