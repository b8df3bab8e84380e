"""S3 faults against a moto server: the server stopped and restarted during a conversion, and a proxy that
fails a share of requests with HTTP 503. Retries absorb them or the run fails clearly; a rerun always
completes; no partial shard is listed and the manifest never points at a missing shard."""

from __future__ import annotations

import http.client
import http.server
import json
import os
import random
import subprocess
import threading
import time

import pytest
import s3fs
from moto.server import ThreadedMotoServer

from jetstore.dataset.dataset import Dataset
from jetstore.errors import StorageError
from tests.conftest import assert_table_matches, free_port, reference_for
from tests.helpers import REPO, cli, run_convert

KEY, SECRET = "AKIAFAULTS0000000001", "faults-secret-value"


def options(endpoint: str) -> dict:
    return {"endpoint_url": endpoint, "key": KEY, "secret": SECRET,
            "config_kwargs": {"retries": {"max_attempts": 10, "mode": "standard"}, "connect_timeout": 2}}


def commits(fs, prefix: str) -> int:
    try:
        return len(fs.ls(f"{prefix}/_commits", refresh=True))
    except (FileNotFoundError, OSError):
        return 0


def restart_during_convert(client, files, bucket: str, opts: dict, stop, start) -> None:
    """Convert with 50 shards; stop the server after 5 commits, restart it 1.5 s later; then the first run
    has succeeded (retries) or failed naming shards with no manifest, and a rerun completes the dataset."""
    url = f"s3://{bucket}/ds.zarr"
    fs = s3fs.S3FileSystem(**{k: v for k, v in opts.items() if k != "config_kwargs"}, skip_instance_cache=True)
    if not fs.exists(bucket):
        fs.mkdir(bucket)
    elif fs.exists(f"{bucket}/ds.zarr"):  # a server kept from an earlier run: start clean
        fs.rm(f"{bucket}/ds.zarr", recursive=True)
    result: dict = {}

    def first_run() -> None:
        try:
            result["report"] = run_convert(client, files, url, options=opts, jets_per_shard=50, overwrite=True)
        except StorageError as exc:
            result["error"] = exc

    thread = threading.Thread(target=first_run)
    thread.start()
    deadline = time.time() + 90
    while time.time() < deadline and commits(fs, f"{bucket}/ds.zarr") < 5:
        time.sleep(0.05)
    stop()
    stopped_mid_run = not result
    time.sleep(1.5)
    start()
    thread.join(timeout=300)
    assert stopped_mid_run and result
    if "error" in result:  # retries exhausted: one storage error naming the shards' count, never an input
        assert "could not be written" in str(result["error"]) and "rerun to resume" in str(result["error"])
    else:
        assert result["report"].ok
    again = run_convert(client, files, url, options=opts, jets_per_shard=50)
    assert again.ok and again.written + again.reused == 50
    dataset = Dataset.open(url, opts)
    assert_table_matches(dataset.read_all(), reference_for(dataset), dataset.schema)
    result = cli("verify", url, "--storage-options", json.dumps(opts))
    assert result.returncode == 0, result.stderr


@pytest.mark.slow
def test_moto_restarted_during_convert(dask_client, sample_files):
    port = free_port()
    servers = [ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)]
    servers[0].start()

    def start() -> None:  # a new server on the same port sees the same in-process buckets
        servers.append(ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False))
        servers[-1].start()

    try:
        restart_during_convert(dask_client, sample_files, "restart", options(f"http://127.0.0.1:{port}"),
                               lambda: servers[-1].stop(), start)
    finally:
        servers[-1].stop()


@pytest.mark.ceph
def test_ceph_gateway_restarted_during_convert(dask_client, sample_files, ceph_rgw):
    directory = os.environ["JETSTORE_CEPH_DIR"]
    script = str(REPO / "tests/ceph/rgw.sh")
    server = ceph_rgw["http"]

    def gateway(action: str) -> None:
        subprocess.run(["bash", script, action, directory], check=True, capture_output=True, timeout=60)

    def start() -> None:
        gateway("start-gateway")
        for _ in range(100):  # until it answers again
            try:
                http.client.HTTPConnection(server.endpoint.split("//")[1], timeout=1).request("GET", "/")
                return
            except OSError:
                time.sleep(0.2)

    opts = options(server.endpoint) | {"key": server.key, "secret": server.secret}
    restart_during_convert(dask_client, sample_files, "jetstore-restart", opts, lambda: gateway("stop-gateway"),
                           start)


class FlakyProxy(http.server.ThreadingHTTPServer):
    """Forwards HTTP to the S3 server, answering a share of requests with 503 Slow Down instead."""

    def __init__(self, target_port: int, failure_rate: float):
        self.target_port, self.failure_rate, self.failed = target_port, failure_rate, 0
        self.rng = random.Random(7)
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), FlakyHandler)


class FlakyHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def _forward(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        with self.server.lock:
            fail = self.server.rng.random() < self.server.failure_rate
            self.server.failed += fail
        if fail:
            payload = b"<Error><Code>SlowDown</Code><Message>injected</Message></Error>"
            self.send_response(503)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        upstream = http.client.HTTPConnection("127.0.0.1", self.server.target_port, timeout=30)
        # headers (Host included) pass unchanged: they are covered by the request's SigV4 signature
        upstream.request(self.command, self.path, body=body, headers=dict(self.headers.items()))
        response = upstream.getresponse()
        data = response.read()
        self.send_response(response.status)
        for key, value in response.getheaders():
            if key.lower() not in ("transfer-encoding", "content-length", "connection"):
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        upstream.close()

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _forward


@pytest.mark.parametrize("backend", ["moto", pytest.param("ceph", marks=pytest.mark.ceph)])
@pytest.mark.slow
def test_transient_503s_are_retried(dask_client, sample_files, request, backend):
    server = request.getfixturevalue("moto_server") if backend == "moto" else \
        request.getfixturevalue("ceph_rgw")["http"]
    server.make_bucket("flaky")
    proxy = FlakyProxy(int(server.endpoint.rsplit(":", 1)[1]), failure_rate=0.1)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{proxy.server_address[1]}"
    opts = options(endpoint) | {"key": server.key, "secret": server.secret}
    try:
        report = run_convert(dask_client, sample_files, "s3://flaky/ds.zarr", options=opts, jets_per_shard=250,
                             overwrite=True)
        if not report.ok:  # a request failing every retry: named, and the rerun completes
            report = run_convert(dask_client, sample_files, "s3://flaky/ds.zarr", options=opts, jets_per_shard=250)
        assert report.ok and proxy.failed > 0
        dataset = Dataset.open("s3://flaky/ds.zarr", opts)
        assert_table_matches(dataset.read_all(), reference_for(dataset), dataset.schema)
    finally:
        proxy.shutdown()
