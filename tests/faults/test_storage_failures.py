"""Storage failures are storage failures: an unreachable endpoint, no credentials, a 403, a missing bucket and
an outage during the run each end the CLI with exit code 3 and one line naming the endpoint or bucket and the
likely fix; no traceback (unless -v); no input is blamed."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.helpers import REPO, cli

FEW_RETRIES = '{"config_kwargs": {"retries": {"max_attempts": 2, "mode": "standard"}}}'  # the outage test's pace
NO_AWS_FILES = {"AWS_SHARED_CREDENTIALS_FILE": "/nonexistent", "AWS_CONFIG_FILE": "/nonexistent",
                "AWS_EC2_METADATA_DISABLED": "true"}


def environment(**values: str) -> dict[str, str]:
    """The test process's environment without any AWS_* or scheduler settings, plus ``values``."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k != "DASK_SCHEDULER_ADDRESS"}
    return {**base, **NO_AWS_FILES, **values}


def convert(url: str, files: list[str], env: dict[str, str], *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "jetstore", "convert", *files, "--schema", "cms_ak4", "-o", url,
                           "--workers", "1", "--no-progress", *extra], capture_output=True, text=True, timeout=300,
                          env=env, cwd=REPO)


def assert_storage_error(result: subprocess.CompletedProcess, files: list[str], *fragments: str) -> None:
    assert result.returncode == 3, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("jetstore: error:")]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert not any(Path(f).name in result.stderr for f in files), "an input was blamed"


@pytest.mark.slow
def test_unreachable_endpoint_fails_in_seconds(sample_files):
    endpoint = f"http://127.0.0.1:{free_port()}"
    start = time.perf_counter()
    result = convert("s3://bucket/ds.zarr", sample_files, environment(
        AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="k", AWS_SECRET_ACCESS_KEY="s"))
    assert_storage_error(result, sample_files, f"cannot reach {endpoint}", "AWS_ENDPOINT_URL")
    assert time.perf_counter() - start < 45
    verbose = convert("s3://bucket/ds.zarr", sample_files, environment(
        AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="k", AWS_SECRET_ACCESS_KEY="s"), "-v")
    assert verbose.returncode == 3 and "Traceback" in verbose.stderr  # -v shows where it happened


@pytest.mark.slow
def test_no_credentials(sample_files, moto_server):
    result = convert("s3://bucket/ds.zarr", sample_files, environment(AWS_ENDPOINT_URL=moto_server.endpoint))
    assert_storage_error(result, sample_files, "no credentials for", "AWS_ACCESS_KEY_ID")


@pytest.mark.parametrize("backend", ["moto", "ceph"])
@pytest.mark.slow
def test_missing_bucket(sample_files, moto_server, backend, request):
    server = moto_server if backend == "moto" else request.getfixturevalue("ceph_rgw")["http"]
    bucket = f"missing-{uuid.uuid4().hex[:8]}"
    result = convert(f"s3://{bucket}/ds.zarr", sample_files, environment(**server.environ()))
    assert_storage_error(result, sample_files, f"bucket '{bucket}' does not exist at {server.endpoint}",
                         "create it first")
    stats = cli("inspect", f"s3://{bucket}/ds.zarr", env=environment(**server.environ()))
    assert stats.returncode in (3, 4) and "Traceback" not in stats.stderr and bucket in stats.stderr


def test_access_denied_on_ceph(sample_files, ceph_rgw):
    server = ceph_rgw["http"]
    bucket = f"denied-{uuid.uuid4().hex[:8]}"
    server.make_bucket(bucket)
    env = environment(**{**server.environ(), "AWS_SECRET_ACCESS_KEY": "not-the-secret"})
    result = convert(f"s3://{bucket}/ds.zarr", sample_files, env)
    assert_storage_error(result, sample_files, f"access denied by {server.endpoint}", "credentials")
    assert "not-the-secret" not in result.stderr


@pytest.mark.slow
def test_outage_during_the_run_is_a_storage_failure(sample_files, tmp_path):
    """A moto server in its own process, killed once shards are being committed and not restarted: the run
    ends with exit code 3 naming the endpoint, and blames no input."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    env = environment(AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="k", AWS_SECRET_ACCESS_KEY="s",
                      AWS_DEFAULT_REGION="us-east-1")
    try:
        for _ in range(100):
            ready = subprocess.run([sys.executable, "-c", "import s3fs; s3fs.S3FileSystem().mkdir('outage')"],
                                   env=env, capture_output=True)
            if ready.returncode == 0:
                break
            time.sleep(0.2)
        run = subprocess.Popen([sys.executable, "-m", "jetstore", "convert", *sample_files, "--schema", "cms_ak4",
                                "-o", "s3://outage/ds.zarr", "--workers", "1", "--no-progress",
                                "--jets-per-shard", "25", "--storage-options", FEW_RETRIES], env=env, cwd=REPO,
                               stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 120
        while time.time() < deadline and run.poll() is None:
            listed = subprocess.run([sys.executable, "-c", "import s3fs; print(len(s3fs.S3FileSystem()"
                                     ".ls('outage/ds.zarr/_commits')))"], env=env, capture_output=True, text=True)
            if listed.returncode == 0 and int(listed.stdout or 0) >= 3:
                break
            time.sleep(0.2)
        server.kill()
        server.wait()
        stderr = run.communicate(timeout=300)[1]
    finally:
        server.kill()
    result = subprocess.CompletedProcess(run.args, run.returncode, "", stderr)
    assert_storage_error(result, sample_files, endpoint)
