"""Credentials never reach the Dask dashboard: task keys and names carry no secret."""

from __future__ import annotations

import pytest
from distributed import get_task_stream

from tests.helpers import run_convert


@pytest.mark.slow
def test_task_names_carry_no_secrets(dask_client, sample_files, moto_server):
    moto_server.make_bucket("keys")
    options = {"endpoint_url": moto_server.endpoint, "key": moto_server.key, "secret": moto_server.secret}
    with get_task_stream(dask_client) as stream:
        report = run_convert(dask_client, sample_files, "s3://keys/ds.zarr", options=options, jets_per_shard=700)
    assert report.ok
    names = [str(task["key"]) for task in stream.data]
    assert len(names) >= 2 + 5  # inspections and shards
    assert any(name.startswith("convert-") for name in names)
    for text in names:
        assert moto_server.secret not in text and moto_server.key not in text
    shown = dask_client.run_on_scheduler(lambda dask_scheduler: repr(list(dask_scheduler.tasks)))
    assert moto_server.secret not in shown


@pytest.mark.slow
def test_environment_keys_never_reach_output_or_dataset(sample_files, moto_server, tmp_path):
    """Keys from AWS_* variables: absent from the CLI's output (progress, failures, worker logs) and the dataset."""
    import s3fs

    from tests.helpers import cli

    moto_server.make_bucket("envkeys")
    env = moto_server.environ()
    missing = str(tmp_path / "missing.root")
    result = cli("convert", *sample_files, missing, "--schema", "cms_ak4", "--output", "s3://envkeys/ds.zarr",
                 "--workers", "1", "--skip-bad-inputs", env=env)
    assert result.returncode == 1 and "missing.root: no such file" in result.stderr and "%" in result.stderr
    fs = s3fs.S3FileSystem(endpoint_url=moto_server.endpoint, key=moto_server.key, secret=moto_server.secret)
    stored = b"".join(fs.cat_file(p) for p in fs.find("envkeys/ds.zarr") if p.endswith(".json")).decode()
    for text in (result.stdout, result.stderr, stored):
        assert moto_server.secret not in text and moto_server.key not in text
