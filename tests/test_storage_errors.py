"""Storage exceptions are classified by their type (botocore's, aiohttp's, the ``OSError`` family), anywhere in
their chain, never by their class's name: a library's subclass is recognised, an unrelated class that happens to
share a name is not."""

from __future__ import annotations

import socket
import ssl

import aiohttp
import pytest
from botocore import exceptions as boto

from jetstore.io.storage_errors import failure

URL = "s3://bucket/ds.zarr"


def connector_error(kind: type[aiohttp.ClientConnectorError], cause: OSError) -> aiohttp.ClientConnectorError:
    return kind(aiohttp.client_reqrep.ConnectionKey("rgw", 443, True, True, None, None, None), cause)


class Stalled(aiohttp.ServerTimeoutError):
    """A subclass some library might raise: still a timeout."""


class EndpointConnectionError(Exception):  # named like botocore's on purpose: not a storage failure
    """An unrelated class with the name of botocore's."""


@pytest.mark.parametrize(("exc", "words"), [
    (boto.NoCredentialsError(), "no credentials for"),
    (boto.EndpointConnectionError(endpoint_url="https://rgw"), "cannot reach"),
    (boto.ConnectTimeoutError(endpoint_url="https://rgw"), "cannot reach"),
    (connector_error(aiohttp.ClientConnectorError, OSError(111, "refused")), "cannot reach"),
    (aiohttp.ServerDisconnectedError(), "cannot reach"),
    (ConnectionResetError(104, "reset"), "cannot reach"),
    (socket.gaierror(-2, "Name or service not known"), "cannot reach"),
    (connector_error(aiohttp.ClientConnectorCertificateError, ssl.SSLCertVerificationError("bad")), "TLS handshake"),
    (ssl.SSLError("wrong version number"), "TLS handshake"),
    (boto.ReadTimeoutError(endpoint_url="https://rgw"), "did not answer in time"),
    (Stalled(), "did not answer in time"),
])
def test_a_storage_failure_is_told_by_its_type(exc, words):
    error = failure(exc, URL, {"endpoint_url": "https://rgw"})
    assert error is not None and words in str(error), (exc, error)


def test_the_type_is_found_in_the_chain():
    try:
        try:
            raise boto.EndpointConnectionError(endpoint_url="https://rgw")
        except Exception as inner:
            raise FileNotFoundError("s3fs's translation") from inner
    except FileNotFoundError as exc:
        error = failure(exc, URL)
    assert error is not None and "cannot reach" in str(error)


def test_a_class_named_like_a_storage_failure_is_not_one():
    assert failure(EndpointConnectionError("not botocore's"), URL) is None
    assert failure(ValueError("ConnectTimeoutError"), URL) is None
