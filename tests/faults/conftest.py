"""Fixtures of the fault tests."""

from __future__ import annotations

import uuid

import pytest

from jetstore.io import settings


@pytest.fixture(params=["local", "moto", "ceph"])
def target(request, tmp_path, moto_server, s3_env):
    """(dataset URL, storage options, environment for CLI runs) on each backend."""
    return make_target(request, tmp_path, moto_server, s3_env)


@pytest.fixture(params=["local", "ceph"])
def target_local_ceph(request, tmp_path, moto_server, s3_env):
    """As ``target``, on local disk and the real Ceph RGW (for the slower cases)."""
    return make_target(request, tmp_path, moto_server, s3_env)


def make_target(request, tmp_path, moto_server, s3_env):
    if request.param == "local":
        return str(tmp_path / "ds.zarr"), {}, {}
    server = moto_server if request.param == "moto" else request.getfixturevalue("ceph_rgw")["http"]
    bucket = f"lease-{uuid.uuid4().hex[:10]}"
    server.make_bucket(bucket)
    s3_env(server)
    return f"s3://{bucket}/ds.zarr", settings.resolve_storage_options(f"s3://{bucket}/ds.zarr"), server.environ()
