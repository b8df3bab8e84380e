"""Read side: missing shards, flipped bytes, manifests from the future, stats of another config."""

from __future__ import annotations

import json
import shutil

import pytest

from jetstore.dataset.dataset import Dataset
from jetstore.errors import DatasetError
from tests.helpers import cli, run_convert


@pytest.fixture(scope="module")
def parquet_dataset(dask_client, sample_files, tmp_path_factory):
    out = tmp_path_factory.mktemp("readfaults") / "ds.parquet"
    assert run_convert(dask_client, sample_files, out, "parquet").ok
    return out


def flip(path, position):
    data = bytearray(path.read_bytes())
    data[position] ^= 0xFF
    path.write_bytes(bytes(data))


def test_flipped_bytes_in_parquet_are_caught_and_named(parquet_dataset, tmp_path):
    copy = tmp_path / "copy.parquet"
    shutil.copytree(parquet_dataset, copy)
    dataset = Dataset.open(str(copy))
    shard = dataset.manifest.shards[0]
    flip(copy / shard.path, (copy / shard.path).stat().st_size // 2)
    with pytest.raises(DatasetError, match=f"shard {shard.path} is damaged"):
        dataset.read_shard(shard)
    result = cli("verify", str(copy))
    assert result.returncode == 1 and f"shard {shard.path}: missing, or its bytes do not match" in result.stderr
    assert cli("verify", str(parquet_dataset)).returncode == 0


def test_missing_shard_is_named(parquet_dataset, tmp_path):
    copy = tmp_path / "copy.parquet"
    shutil.copytree(parquet_dataset, copy)
    dataset = Dataset.open(str(copy))
    shard = dataset.manifest.shards[-1]
    (copy / shard.path).unlink()
    with pytest.raises(DatasetError, match=f"shard {shard.path} is listed in the manifest but missing"):
        dataset.read_all()


def test_manifest_from_a_newer_version_is_refused(parquet_dataset, tmp_path):
    copy = tmp_path / "copy.parquet"
    shutil.copytree(parquet_dataset, copy)
    manifest = json.loads((copy / "_manifest.json").read_text())
    manifest["format_version"] = 99
    (copy / "_manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DatasetError, match="format_version 99 is newer than this jetstore supports"):
        Dataset.open(str(copy))
    result = cli("inspect", str(copy))
    assert result.returncode == 4 and "upgrade jetstore" in result.stderr and "Traceback" not in result.stderr
