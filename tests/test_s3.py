"""S3 through a moto server over HTTP and a real Ceph RGW over HTTP and HTTPS: convert, read back, resume,
multipart uploads, and credentials that never appear in output or in the dataset."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import s3fs

from jetstore.dataset.dataset import Dataset
from jetstore.io import filesystems, settings
from tests.conftest import assert_table_matches, reference_for
from tests.helpers import cli, run_convert


def local_copy(files):
    """Map an uploaded input's s3:// URL back to the local file it came from."""
    by_name = {os.path.basename(f): f for f in files}
    return lambda url: by_name.get(os.path.basename(url), url)


def upload(server, bucket, files) -> list[str]:
    fs = s3fs.S3FileSystem(**settings.s3_options_from_environment(server.environ()))
    urls = []
    for path in files:
        url = f"s3://{bucket}/inputs/{os.path.basename(path)}"
        fs.put_file(path, url)
        urls.append(url)
    return urls


@pytest.mark.parametrize("fmt", ["zarr", "parquet"])
@pytest.mark.slow
def test_moto_convert_to_s3_and_read_back(dask_client, sample_files, moto_server, s3_env, fmt):
    s3_env(moto_server)
    moto_server.make_bucket("jets")
    url = f"s3://jets/datasets/sample.{fmt}"
    report = run_convert(dask_client, sample_files, url, fmt, jets_per_shard=600, overwrite=True)
    assert report.ok and report.written == 5
    dataset = Dataset.open(url)
    assert_table_matches(dataset.read_all(), reference_for(dataset), dataset.schema)
    fs, root = filesystems.filesystem(url, settings.resolve_storage_options(url))
    names = sorted(os.path.basename(p) for p in fs.ls(root))
    assert names == ["_commits", "_lease.json", "_manifest.json", "_manifests", "shards",
                     *(["zarr.json"] if fmt == "zarr" else [])]  # the root group, installed fenced on S3 too
    again = run_convert(dask_client, sample_files, url, fmt, jets_per_shard=600)
    assert (again.written, again.reused) == (0, 5)


def test_moto_inputs_from_s3_glob(dask_client, sample_files, moto_server, s3_env, tmp_path):
    s3_env(moto_server)
    moto_server.make_bucket("raw")
    upload(moto_server, "raw", sample_files)
    report = run_convert(dask_client, ["s3://raw/inputs/sample_cms_ak4_*.root"], tmp_path / "ds", "zarr")
    assert report.ok, report.failures
    assert [i.url for i in report.manifest.inputs] == [f"s3://raw/inputs/{os.path.basename(p)}" for p in sample_files]
    dataset = Dataset.open(str(tmp_path / "ds"))
    assert_table_matches(dataset.read_all(), reference_for(dataset, local=local_copy(sample_files)), dataset.schema)


@pytest.mark.slow
def test_credentials_never_leak(sample_files, moto_server, tmp_path):
    """Keys given only as --storage-options: absent from stdout, stderr (also on failures) and the dataset."""
    moto_server.make_bucket("secret-test")
    env = {"AWS_ENDPOINT_URL": moto_server.endpoint, "AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""}
    options = json.dumps({"key": moto_server.key, "secret": moto_server.secret})
    url = "s3://secret-test/ds.zarr"
    missing = str(tmp_path / "missing.root")
    result = cli("convert", *sample_files, missing, "--schema", "cms_ak4", "--output", url, "--workers", "1",
                 "--storage-options", options, "--skip-bad-inputs", env=env)
    assert result.returncode == 1 and "missing.root: no such file" in result.stderr
    shown = cli("inspect", url, "--storage-options", options, env=env)
    assert shown.returncode == 0 and "jets" in shown.stdout
    fs = s3fs.S3FileSystem(endpoint_url=moto_server.endpoint, key=moto_server.key, secret=moto_server.secret)
    stored = b"".join(fs.cat_file(p) for p in fs.find("secret-test/ds.zarr") if p.endswith(".json"))
    for text in (result.stdout, result.stderr, shown.stdout, shown.stderr, stored.decode()):
        assert moto_server.secret not in text and moto_server.key not in text
    missing = cli("inspect", "s3://secret-test/nothing", "--storage-options", options, env=env)
    assert missing.returncode == 4 and "no _manifest.json" in missing.stderr
    assert moto_server.secret not in missing.stderr + missing.stdout


def test_storage_options_print_without_secrets():
    options = settings.StorageOptions({"key": "AKIA1", "secret": "s3cr3t", "client_kwargs": {"token": "tok-9f8e"}})
    assert "s3cr3t" not in repr(options) and "tok-9f8e" not in str(options) and "AKIA1" not in repr(options)
    assert options.scrub("failed with s3cr3t and tok-9f8e") == "failed with *** and ***"


def test_rgw_safe_defaults_from_environment():
    options = settings.s3_options_from_environment({"AWS_ENDPOINT_URL_S3": "http://rgw:80", "AWS_ACCESS_KEY_ID": "k",
                                                   "AWS_SECRET_ACCESS_KEY": "s", "AWS_CA_BUNDLE": "/ca.pem"})
    assert options["endpoint_url"] == "http://rgw:80" and options["key"] == "k" and options["secret"] == "s"
    config = options["config_kwargs"]
    assert config["s3"]["addressing_style"] == "path"
    assert config["request_checksum_calculation"] == "when_required"
    assert options["client_kwargs"]["verify"] == "/ca.pem"
    merged = settings.resolve_storage_options("s3://b/p", {"config_kwargs": {"s3": {"addressing_style": "virtual"}}})
    assert merged["config_kwargs"]["s3"]["addressing_style"] == "virtual"
    assert merged["config_kwargs"]["request_checksum_calculation"] == "when_required"


def _multipart_round_trip(server, bucket, tmp_path, monkeypatch):
    from jetstore.io.backend import objects, open_backend

    monkeypatch.setattr(objects, "MULTIPART_PART_SIZE", 5 << 20)
    payload = np.random.default_rng(1).bytes(12 << 20)
    local = tmp_path / "big.bin"
    local.write_bytes(payload)
    backend = open_backend(f"s3://{bucket}/big", settings.s3_options_from_environment(server.environ()))
    backend.publish(local, "big.bin")
    assert backend.read("big.bin") == payload


def test_moto_multipart_publish(moto_server, tmp_path, monkeypatch):
    moto_server.make_bucket("multi")
    _multipart_round_trip(moto_server, "multi", tmp_path, monkeypatch)


@pytest.mark.ceph
@pytest.mark.parametrize("scheme, fmt", [("http", "zarr"), ("https", "parquet"), ("https", "zarr")])
def test_ceph_rgw_convert_and_read_back(dask_client, sample_files, ceph_rgw, s3_env, scheme, fmt):
    server = ceph_rgw[scheme]
    s3_env(server)
    server.make_bucket("jetstore-it")
    url = f"s3://jetstore-it/{scheme}/sample.{fmt}"
    report = run_convert(dask_client, sample_files, url, fmt, jets_per_shard=800, overwrite=True)
    assert report.ok, report.failures
    dataset = Dataset.open(url)
    assert_table_matches(dataset.read_all(), reference_for(dataset, local=local_copy(sample_files)), dataset.schema)
    again = run_convert(dask_client, sample_files, url, fmt, jets_per_shard=800)
    assert again.reused == len(report.manifest.shards) and again.written == 0


@pytest.mark.ceph
@pytest.mark.parametrize("scheme", ["http", "https"])
def test_ceph_rgw_multipart_publish(ceph_rgw, tmp_path, monkeypatch, scheme):
    ceph_rgw[scheme].make_bucket("jetstore-multi")
    _multipart_round_trip(ceph_rgw[scheme], "jetstore-multi", tmp_path, monkeypatch)


@pytest.mark.ceph
def test_ceph_rgw_inputs_from_s3(dask_client, sample_files, ceph_rgw, s3_env, tmp_path):
    server = ceph_rgw["https"]
    s3_env(server)
    server.make_bucket("jetstore-raw")
    urls = upload(server, "jetstore-raw", sample_files)
    report = run_convert(dask_client, urls, tmp_path / "ds", "parquet")
    assert report.ok, report.failures
    dataset = Dataset.open(str(tmp_path / "ds"))
    assert_table_matches(dataset.read_all(), reference_for(dataset, local=local_copy(sample_files)), dataset.schema)
