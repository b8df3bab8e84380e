"""Convert and stats as deployed: a Dask scheduler and two workers started as processes of their own in
another directory, the command line run with relative paths from a third."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from jetstore.dataset.dataset import Dataset
from tests.conftest import assert_table_matches, reference_for
from tests.external import ENV_WITHOUT_SCHEDULER, ExternalCluster
from tests.helpers import REPO


@pytest.fixture(scope="module")
def external_cluster(tmp_path_factory):
    """``dask scheduler`` + 2 × ``dask worker`` (one thread each), running in their own directory."""
    home = tmp_path_factory.mktemp("workers-home")
    with ExternalCluster(home, workers=2) as cluster:
        yield cluster.address, home


def jetstore(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "jetstore", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600, env={**ENV_WITHOUT_SCHEDULER, **(env or {})})


@pytest.mark.slow
def test_convert_and_stats_with_relative_paths(external_cluster, sample_files, tmp_path):
    address, workers_home = external_cluster
    (tmp_path / "in").mkdir()
    for path in sample_files:
        shutil.copy(path, tmp_path / "in")
    shutil.copy(REPO / "tests/fixtures/weaver_cms_ak4.yaml", tmp_path / "cfg.yaml")

    converted = jetstore("convert", "in/*.root", "--schema", "cms_ak4", "-o", "out/ak4.zarr", "--scheduler", address,
                         "--jets-per-shard", "700", "--no-progress", cwd=tmp_path)
    assert converted.returncode == 0, converted.stderr
    assert f"dask scheduler {address}" in converted.stderr
    assert sorted(p.name for p in (tmp_path / "out/ak4.zarr/shards").iterdir()) and not (workers_home / "out").exists()
    verified = jetstore("verify", "out/ak4.zarr", cwd=tmp_path)
    assert verified.returncode == 0 and "5 of 5 shard(s) verified" in verified.stdout, verified.stderr
    dataset = Dataset.open(str(tmp_path / "out/ak4.zarr"))
    assert all(os.path.isabs(i.url) for i in dataset.manifest.inputs)
    assert_table_matches(dataset.read_all(), reference_for(dataset), dataset.schema)

    stats = jetstore("stats", "out/ak4.zarr", "--config", "cfg.yaml", cwd=tmp_path,
                     env={"DASK_SCHEDULER_ADDRESS": address})  # taken from the environment: no LocalCluster
    assert stats.returncode == 0, stats.stderr
    assert f"dask scheduler {address}" in stats.stderr and "stats pass 1" in stats.stderr
    assert len(list((tmp_path / "out/ak4.zarr/_stats").glob("*.json"))) == 1


@pytest.mark.slow
def test_checks_come_before_the_cluster(sample_files, tmp_path, moto_server):
    """A missing bucket, bad inputs and a bad schema are reported in one line before any scheduler is
    contacted (this one does not exist)."""
    unreachable = "tcp://127.0.0.1:9"
    missing_bucket = jetstore("convert", *sample_files, "--schema", "cms_ak4", "-o", "s3://no-such-bucket/ds.zarr",
                              "--scheduler", unreachable, cwd=tmp_path, env=moto_server.environ())
    assert missing_bucket.returncode == 3
    assert "bucket 'no-such-bucket' does not exist" in missing_bucket.stderr
    assert "Traceback" not in missing_bucket.stderr and len(missing_bucket.stderr.strip().splitlines()) == 1
    no_inputs = jetstore("convert", "nothing/*.root", "--schema", "cms_ak4", "-o", "ds.zarr", "--scheduler",
                         unreachable, cwd=tmp_path)
    assert no_inputs.returncode == 1 and "no file matches this pattern" in no_inputs.stderr
    bad_schema = jetstore("convert", *sample_files, "--schema", "no_such_schema", "-o", "ds.zarr", "--scheduler",
                          unreachable, cwd=tmp_path)
    assert bad_schema.returncode == 2 and "no bundled schema of that name" in bad_schema.stderr
    no_scheduler = jetstore("convert", *sample_files, "--schema", "cms_ak4", "-o", "ds.zarr", "--scheduler",
                            unreachable, cwd=tmp_path)
    assert no_scheduler.returncode == 3 and "cannot reach the Dask scheduler" in no_scheduler.stderr
    assert json.loads((tmp_path / "ds.zarr" / "_lease.json").read_text())["state"] == "released"  # not held
