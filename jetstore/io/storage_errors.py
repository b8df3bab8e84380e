"""Storage failures as one-line :class:`~jetstore.errors.StorageError` s: an exception (or one in its chain)
classified by its type (botocore's, aiohttp's, the ``OSError`` family), never by its name, into what went wrong
(credentials, TLS, an unreachable endpoint, a timeout, a missing bucket, access denied, an outage, a full or
read-only disk) with where and the likely fix."""

from __future__ import annotations

import contextlib
import errno
import functools
import os
from collections.abc import Iterator, Mapping
from typing import Any

from jetstore.errors import StorageError
from jetstore.io.locations import is_local
from jetstore.io.settings import StorageOptions

DENIED = {"AccessDenied", "403", "Forbidden", "SignatureDoesNotMatch", "InvalidAccessKeyId", "AllAccessDisabled"}


@functools.cache
def kinds() -> dict[str, tuple[type[BaseException], ...]]:
    """The exception types of each kind of failure, checked in this order (a TLS error is also a connection
    error). Imported on the first failure: ``import jetstore`` loads neither botocore nor aiohttp."""
    import socket
    import ssl

    import aiohttp
    from botocore import exceptions as boto

    return {
        "credentials": (boto.NoCredentialsError, boto.PartialCredentialsError, boto.CredentialRetrievalError),
        "tls": (ssl.SSLError, boto.SSLError, aiohttp.ClientSSLError),
        "unreachable": (ConnectionError, socket.gaierror, boto.EndpointConnectionError, boto.ConnectTimeoutError,
                        boto.ConnectionClosedError,
                        aiohttp.ClientConnectorError, aiohttp.ServerDisconnectedError, aiohttp.ClientOSError,
                        aiohttp.ClientPayloadError),  # the last: a response cut short, the server gone mid-body
        "timeout": (TimeoutError, boto.ReadTimeoutError, aiohttp.ServerTimeoutError),
    }


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
    found = {kind for kind, types in kinds().items() if any(isinstance(e, types) for e in chain)}
    responses = [r for e in chain if isinstance(r := getattr(e, "response", None), Mapping)]  # botocore's
    codes = {str(r.get("Error", {}).get("Code")) for r in responses}
    statuses = {r.get("ResponseMetadata", {}).get("HTTPStatusCode") for r in responses}
    scrub = StorageOptions(options or {}).scrub
    if "credentials" in found:
        return StorageError(f"{url}: no credentials for {where}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                            "(or mount the Kubernetes secret), or pass --storage-options")
    if "tls" in found:
        return StorageError(f"{url}: the TLS handshake with {where} failed: an http:// endpoint given as https://, "
                            "or a certificate the CA bundle (AWS_CA_BUNDLE) does not trust")
    if "unreachable" in found:
        return StorageError(f"{url}: cannot reach {where}; check the endpoint URL (AWS_ENDPOINT_URL) and the network")
    if "timeout" in found:
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


