"""Range reads of S3 objects through presigned URLs (jetstore/store/backend/presigned.py): the bytes botocore
reads, on moto and on a real Ceph RGW; URLs signed again before they expire and once after a 403; the
filesystems that keep botocore's path; no signature in logs or errors."""

from __future__ import annotations

import datetime
import logging
import traceback
from urllib.parse import parse_qs, quote, urlsplit

import botocore.auth
import numpy as np
import pytest

from jetstore.store import storage
from jetstore.store.backend import open_backend, presigned

PAYLOAD = np.random.default_rng(26).bytes(300_000)
RANGES = [(0, 10), (5, 100_000), (299_990, 300_000), (150_000, 300_000)]
V2 = {"signature_version": "s3"}  # SigV4 unless configured so


@pytest.fixture
def signings(monkeypatch):
    """Count SigV4 signatures; ``signings.age`` (seconds) backdates the next ones (``signings.once``: only the
    first), which makes a URL that has already expired."""
    real = botocore.auth.get_current_datetime

    class Clock:
        count, age, once = 0, 0.0, False

        def __call__(self):
            self.count += 1
            now = real() - datetime.timedelta(seconds=self.age)
            if self.once:
                self.age = 0.0
            return now

    clock = Clock()
    monkeypatch.setattr(botocore.auth, "get_current_datetime", clock)
    return clock


def _options(server, config: dict | None = None, **options) -> dict:
    """The storage options jetstore takes from the environment for ``server``, with client ``config``."""
    out = storage.s3_options_from_environment(server.environ()) | options
    out["config_kwargs"].update(config or {})
    return out


def _backend(server, bucket: str, config: dict | None = None):
    server.make_bucket(bucket)
    backend = open_backend(f"s3://{bucket}/data", _options(server, config))
    backend.put("blob.bin", PAYLOAD)
    return backend


def _signature(reader) -> str:
    """The signature in the URL the reader uses (SigV4 or SigV2)."""
    query = parse_qs(urlsplit(reader._signed[0]).query)
    return (query.get("X-Amz-Signature") or query["Signature"])[0]


def test_presigned_ranges_read_what_botocore_reads(moto_server, monkeypatch):
    backend = _backend(moto_server, "presigned")
    reader = backend.ranges("blob.bin", len(PAYLOAD))
    assert isinstance(reader, presigned.PresignedRanges)
    expected = [PAYLOAD[a:b] for a, b in RANGES]
    assert reader.fetch(RANGES) == expected
    monkeypatch.setenv(presigned.SWITCH, "0")
    botocore_reader = backend.ranges("blob.bin", len(PAYLOAD))
    assert not isinstance(botocore_reader, presigned.PresignedRanges)
    assert botocore_reader.fetch(RANGES) == expected
    assert reader.fetch([(7, 7)]) == [b""]


@pytest.mark.parametrize("options", [{"requester_pays": True}, {"anon": True}, {"version_aware": True},
                                     {"s3_additional_kwargs": {"SSECustomerAlgorithm": "AES256"}}])
def test_reads_presigning_cannot_express_keep_botocore(moto_server, options):
    backend = open_backend("s3://presigned/data", _options(moto_server, **options))
    assert not isinstance(backend.ranges("blob.bin", 10), presigned.PresignedRanges)


def test_a_missing_object_fails_as_through_botocore(moto_server, monkeypatch):
    backend = _backend(moto_server, "presigned")
    with pytest.raises(FileNotFoundError):
        backend.ranges("absent.bin", 10).fetch([(0, 10)])
    monkeypatch.setenv(presigned.SWITCH, "0")
    with pytest.raises(FileNotFoundError):
        backend.ranges("absent.bin", 10).fetch([(0, 10)])


def test_a_url_is_signed_again_before_it_expires(moto_server, signings, monkeypatch):
    reader = _backend(moto_server, "presigned").ranges("blob.bin", len(PAYLOAD))
    before = signings.count
    reader.fetch(RANGES)
    reader.fetch(RANGES)
    assert signings.count == before + 1  # one URL for every range of the object
    monkeypatch.setattr(presigned, "RENEW", -1)  # every URL is due for renewal
    assert reader.fetch(RANGES[:2]) == [PAYLOAD[a:b] for a, b in RANGES[:2]]
    assert signings.count == before + 3


@pytest.mark.parametrize("config", [None, V2])
def test_no_signature_in_logs_or_errors(moto_server, caplog, config):
    caplog.set_level(logging.DEBUG)
    reader = _backend(moto_server, "presigned", config).ranges("blob.bin", len(PAYLOAD))
    reader.fetch(RANGES)
    # the same key at an endpoint that does not answer: the failure, its chain and traceback
    options = _options(moto_server, (config or {}) | {"retries": {"total_max_attempts": 1}},
                       endpoint_url="http://127.0.0.1:9")
    gone = open_backend("s3://presigned/data", options).ranges("blob.bin", len(PAYLOAD))
    with pytest.raises(OSError) as raised:
        gone.fetch([(0, 10)])
    error = storage.failure(raised.value, "s3://presigned/data", options)
    assert "cannot reach http://127.0.0.1:9" in str(error) and "\n" not in str(error)
    redact = storage.RedactingFilter().redact  # as the CLI's log handler writes records (botocore's at -vv)
    logged = "\n".join(redact(r.getMessage()) for r in caplog.records if r.name != "werkzeug")  # not moto's log
    shown = logged + str(error) + "".join(traceback.format_exception(raised.value))
    for signature in (_signature(reader), _signature(gone)):
        assert len(signature) >= 28
        assert signature not in shown and quote(signature, safe="") not in shown


@pytest.mark.ceph
def test_ceph_presigned_ranges_and_expired_urls(ceph_rgw, signings):
    server = ceph_rgw["http"]
    for config in (None, V2):
        reader = _backend(server, "presigned", config).ranges("blob.bin", len(PAYLOAD))
        assert isinstance(reader, presigned.PresignedRanges)
        assert reader.fetch(RANGES) == [PAYLOAD[a:b] for a, b in RANGES]
        assert ("X-Amz-Signature=" in reader._signed[0]) == (config is None)
    tls = _backend(ceph_rgw["https"], "presigned-tls").ranges("blob.bin", len(PAYLOAD))  # the CA bundle trusted
    assert tls.fetch(RANGES) == [PAYLOAD[a:b] for a, b in RANGES]
    backend = _backend(server, "presigned")
    # a URL that has expired (signed two hours ago, valid for one): Ceph answers 403, it is signed anew once
    signings.age, signings.once = 2 * presigned.EXPIRES, True
    fresh = backend.ranges("blob.bin", len(PAYLOAD))
    before = signings.count
    assert fresh.fetch(RANGES[:1]) == [PAYLOAD[:10]]
    assert signings.count == before + 2
    # a 403 that persists (every URL expired): one new signature, then a one-line access error
    signings.age, signings.once = 2 * presigned.EXPIRES, False
    denied = backend.ranges("blob.bin", len(PAYLOAD))
    before = signings.count
    with pytest.raises(PermissionError) as raised:
        denied.fetch(RANGES[:1])
    assert signings.count == before + 2
    error = storage.failure(raised.value, "s3://presigned/data", _options(server))
    assert "access denied by" in str(error) and _signature(denied) not in str(error) + repr(raised.value)


@pytest.mark.parametrize("status, body, expected", [
    (503, b"<Error><Code>SlowDown</Code><Message>Reduce your rate</Message></Error>", "kept failing (SlowDown)"),
    (403, b"<Error><Code>SignatureDoesNotMatch</Code></Error>", "access denied by http://s3 (SignatureDoesNotMatch)"),
    (404, b"<Error><Code>NoSuchBucket</Code></Error>", "bucket 'b' does not exist at http://s3")])
def test_error_answers_read_as_botocore_errors(status, body, expected):
    error = storage.failure(presigned._error(status, body), "s3://b/data", {"endpoint_url": "http://s3"})
    assert expected in str(error) and "\n" not in str(error)


def test_one_client_per_process_for_the_same_options(moto_server):
    """botocore rewrites the retry settings it is given (max_attempts into total_max_attempts): the options
    must not change with them, or every later open makes another filesystem and client (~0.1 s of CPU each)."""
    moto_server.make_bucket("presigned")
    options = _options(moto_server, {"retries": {"max_attempts": 3, "mode": "adaptive"}})
    first = open_backend("s3://presigned/data", options)
    first.put("blob.bin", PAYLOAD)  # the client made
    assert options == _options(moto_server, {"retries": {"max_attempts": 3, "mode": "adaptive"}})
    assert open_backend("s3://presigned/data", options).fs is first.fs
