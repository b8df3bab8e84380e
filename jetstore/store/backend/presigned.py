"""Byte ranges of S3 objects as plain HTTP range GETs of a presigned URL.

Through botocore a request costs ~1 ms of CPU (built, signed and its answer parsed through the client's event
hooks): as much as reading 150 kB, the size of one unit of jets. Here the S3 client signs one URL per object
(its endpoint, addressing style, credentials and signature version: SigV4 unless ``config_kwargs`` choose
another), again after ``RENEW`` seconds, and every range is a GET of that URL with a ``Range`` header, through
aiohttp on fsspec's event loop: ~0.25 ms a request. Connections follow the client's settings: TLS verification
and CA bundle, timeouts, ``max_pool_connections``, proxies from the environment (looked up once per object: per
request they would double the cost). Connection failures, timeouts and 429 / 5xx answers are retried with
exponential backoff, as many attempts in all as the client's ``retries`` allow; a 403 is retried once with a
URL signed anew (the URL or temporary credentials may have expired); other answers become the errors s3fs
raises for them (404 ``FileNotFoundError``, 403 ``PermissionError``, ...). A presigned URL grants access until
it expires: it is never logged nor put into an error message.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import ssl
import time
import urllib.request
import weakref
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import fsspec.asyn
from botocore.exceptions import ClientError
from s3fs.errors import translate_boto_error

from jetstore.store.backend.base import Range, RangeReader

EXPIRES = 3600  # seconds a presigned URL is valid
RENEW = 600  # seconds after which it is signed again
RETRIED = frozenset({429, 500, 502, 503, 504})
MAX_BACKOFF = 20.0  # seconds, as botocore's
DEFAULT_ATTEMPTS = 5  # botocore's default max_attempts
DEFAULT_CONNECTIONS = 10  # botocore's default max_pool_connections
ERROR_CODE = re.compile(rb"<Code>([^<]{1,100})</Code>")
ERROR_MESSAGE = re.compile(rb"<Message>([^<]{1,500})</Message>")
_SESSIONS: dict[int, aiohttp.ClientSession] = {}


SWITCH = "JETSTORE_S3_PRESIGNED"  # "0": every range through botocore (for comparisons)


def usable(fs: Any) -> bool:
    """Whether reads of the S3 filesystem ``fs`` can be presigned GETs: not switched off (``SWITCH``), signed
    (not anonymous), and needing nothing a plain GET lacks: request parameters (SSE-C keys and other extra
    arguments, requester-pays), object versions, proxies given in its config."""
    if os.environ.get(SWITCH, "1") == "0" or fs.anon:
        return False
    return not (fs.s3_additional_kwargs or fs.req_kw or fs.version_aware or fs.config_kwargs.get("proxies"))


class PresignedRanges(RangeReader):
    """The ranges of the object at ``path`` of the S3 filesystem ``fs``, all at once."""

    def __init__(self, fs: Any, path: str):
        self.fs, self.path = fs, path
        self.bucket, self.key, _ = fs.split_path(path)
        self._signed: tuple[str, float] | None = None  # the URL, when it was signed (used on the loop only)
        self._proxy: str | None = None
        self._signing = asyncio.Lock()  # one signature at a time, not one per range in flight

    def fetch(self, ranges: Sequence[Range]) -> list[bytes]:
        return fsspec.asyn.sync(self.fs.loop, self._fetch, list(ranges))

    async def _fetch(self, ranges: list[Range]) -> list[bytes]:
        session = await _session(self.fs)
        return list(await asyncio.gather(*(self._get(session, a, b) for a, b in ranges)))

    async def _url(self, refused: str | None = None) -> str:
        """The URL to read: signed anew when due for renewal or when it is ``refused`` (a 403)."""
        async with self._signing:
            now = time.monotonic()
            if self._signed is None or self._signed[0] == refused or now - self._signed[1] > RENEW:
                await self.fs.set_session()
                client = await self.fs.get_s3(self.bucket)
                client.meta.events.register_first("choose-signer.s3.GetObject", _s3_sigv4,
                                                  unique_id="jetstore-presigned-s3-sigv4")
                url = await client.generate_presigned_url(
                    "get_object", Params={"Bucket": self.bucket, "Key": self.key}, ExpiresIn=EXPIRES)
                self._signed, self._proxy = (url, now), _proxy(url)
            return self._signed[0]

    async def _get(self, session: aiohttp.ClientSession, start: int, end: int) -> bytes:
        if end <= start:
            return b""
        headers = {"Range": f"bytes={start}-{end - 1}"}
        attempts = _attempts(self.fs.config_kwargs.get("retries") or {})
        attempt, signed_anew = 0, False
        while True:
            attempt += 1
            url = await self._url()
            try:
                async with session.get(url, headers=headers, allow_redirects=False, proxy=self._proxy) as response:
                    status, body = response.status, await response.read()
            except aiohttp.ClientSSLError:
                raise
            except (TimeoutError, aiohttp.ClientConnectionError, aiohttp.ClientPayloadError):
                if attempt >= attempts:
                    raise
                await _backoff(attempt)
                continue
            if status in (200, 206):
                return body[start:end] if status == 200 else body  # 200: the Range ignored, the whole object
            if status == 403 and not signed_anew:
                await self._url(refused=url)
                signed_anew, attempt = True, attempt - 1
                continue
            if status in RETRIED and attempt < attempts:
                await _backoff(attempt)
                continue
            raise _error(status, body)


def _s3_sigv4(signature_version: str, **kwargs: Any) -> str | None:
    """S3's SigV4 for a presigned URL where the client signs with SigV4 (its default): botocore would presign
    with SigV2 in regions that allow it (S3 refuses SigV2 for buckets made since 2020). Other choices (SigV2
    configured, v4a, S3 Express) and requests that are not presigned are left to botocore's handlers."""
    return "s3v4-query" if signature_version in ("v4-query", "s3v4-query") else None


def _attempts(retries: dict[str, Any]) -> int:
    """Attempts in all, as botocore counts them: ``total_max_attempts``, else ``max_attempts`` retries + 1 (botocore
    rewrites the one into the other when it makes its client)."""
    if "total_max_attempts" in retries:
        return int(retries["total_max_attempts"])
    return int(retries["max_attempts"]) + 1 if "max_attempts" in retries else DEFAULT_ATTEMPTS


def _proxy(url: str) -> str | None:
    """The proxy for ``url`` from the environment (``HTTPS_PROXY``, ``HTTP_PROXY``, ``NO_PROXY``), as botocore
    finds it."""
    parts = urlsplit(url)
    if urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    return urllib.request.getproxies().get(parts.scheme)


async def _backoff(attempt: int) -> None:
    """Wait before retrying, as botocore does: up to 2^(attempt - 1) seconds, at most ``MAX_BACKOFF``."""
    await asyncio.sleep(random.random() * min(MAX_BACKOFF, 2.0 ** (attempt - 1)))


def _error(status: int, body: bytes) -> OSError:
    """The exception s3fs raises for an S3 error answer (its code and message from the XML body)."""
    code, message = ERROR_CODE.search(body), ERROR_MESSAGE.search(body)
    reason = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "error"
    error = ClientError({"Error": {"Code": code[1].decode(errors="replace") if code else str(status),
                                   "Message": message[1].decode(errors="replace") if message else reason},
                         "ResponseMetadata": {"HTTPStatusCode": status}}, "GetObject")
    return translate_boto_error(error)


async def _session(fs: Any) -> aiohttp.ClientSession:
    """The HTTP session of the filesystem ``fs``: made on its event loop at the first read, closed with it."""
    session = _SESSIONS.get(id(fs))
    if session is None:
        config = fs.config_kwargs
        timeout = aiohttp.ClientTimeout(sock_connect=config.get("connect_timeout", 60),
                                        sock_read=config.get("read_timeout", 60))
        connector = aiohttp.TCPConnector(ssl=_tls(fs), limit=config.get("max_pool_connections", DEFAULT_CONNECTIONS))
        session = aiohttp.ClientSession(connector=connector, timeout=timeout, auto_decompress=False)
        _SESSIONS[id(fs)] = session
        weakref.finalize(fs, _close, fs.loop, id(fs))
    return session


def _tls(fs: Any) -> ssl.SSLContext | bool:
    """How the S3 client verifies TLS: its ``verify`` (False, or a CA bundle), else ``AWS_CA_BUNDLE``."""
    verify = fs.client_kwargs.get("verify", os.environ.get("AWS_CA_BUNDLE") or True)
    if isinstance(verify, str):
        return ssl.create_default_context(cafile=verify)
    return bool(verify)


def _close(loop: asyncio.AbstractEventLoop, key: int) -> None:
    """Close the session of a filesystem that is gone (or at exit)."""
    session = _SESSIONS.pop(key, None)
    if session is None or session.closed:
        return
    with contextlib.suppress(RuntimeError):  # on the loop itself
        asyncio.get_running_loop().create_task(session.close())
        return
    if loop.is_running():
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(session.close(), loop).result(1)
