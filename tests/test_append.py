"""``jetstore convert NEW --output EXISTING --append``: old shards untouched, a new manifest version listing old and
new (the previous one kept), the same dataset as a one-shot conversion, inputs already present skipped, stats of
the smaller dataset stale, and a kill -9 mid-append followed by a rerun loses and doubles nothing."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from jetstore import convert
from jetstore.config import load_training_config
from jetstore.dataset.dataset import Dataset
from jetstore.dataset.manifest import read_manifest_version
from jetstore.errors import DatasetError
from jetstore.stats.result import read_stats, write_stats
from jetstore.stats.run import compute_stats
from tests.conftest import assert_table_matches, reference_for
from tests.helpers import REPO, cli, run_convert

CONFIG = REPO / "tests" / "fixtures" / "weaver_cms_ak4.yaml"


def shard_files(root) -> dict[str, tuple[int, bytes]]:
    """Every shard file: its modification time and bytes."""
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in (root / "shards").iterdir()}


def content(dataset: Dataset) -> list[tuple]:
    return [(s.name, s.checksum, s.n_jets, s.class_counts, s.node_counts, s.pieces)
            for s in dataset.manifest.shards]


@pytest.fixture(scope="module")
def one_shot(dask_client, sample_files, tmp_path_factory) -> Dataset:
    out = tmp_path_factory.mktemp("one_shot") / "ds"
    assert run_convert(dask_client, sample_files, out, jets_per_shard=500).ok
    return Dataset.open(str(out))


@pytest.mark.slow
def test_append_equals_a_one_shot_conversion(dask_client, sample_files, one_shot, tmp_path):
    out = tmp_path / "ds"
    first = run_convert(dask_client, sample_files[:1], out, jets_per_shard=500).manifest
    before = shard_files(out)
    config = load_training_config(CONFIG)
    write_stats(Dataset.open(str(out)), compute_stats(Dataset.open(str(out)), config, dask_client,
                                                      log=lambda _: None))
    cached = {p.name: p.stat().st_mtime_ns for p in (out / "_stats").rglob("*.pass1.npz")}
    assert len(cached) == 3  # one pass-1 result per shard, kept with the dataset
    report = run_convert(dask_client, sample_files[1:], out, jets_per_shard=500, append=True)
    assert report.ok and (report.written, report.reused) == (2, 0)
    dataset = Dataset.open(str(out))
    manifest = dataset.manifest
    assert manifest.version == 2 and [i.url for i in manifest.inputs] == sample_files
    assert manifest.shards[:3] == first.shards  # the old shards, as they were
    assert {name: shard_files(out)[name] for name in before} == before  # not rewritten, not touched
    assert content(dataset) == content(one_shot) and manifest.plan_hash == one_shot.manifest.plan_hash
    assert manifest.n_jets == one_shot.manifest.n_jets and manifest.class_counts == one_shot.manifest.class_counts
    assert read_manifest_version(dataset.fs, str(out), 1).to_json() == first.to_json()  # what changed: 1 → 2
    assert read_manifest_version(dataset.fs, str(out), 2).to_json() == manifest.to_json()
    assert_table_matches(dataset.read_all(), reference_for(dataset), dataset.schema)
    assert cli("verify", str(out)).returncode == 0
    inspected = json.loads(cli("inspect", str(out), "--json").stdout)
    assert inspected["version"] == 2 and inspected["plan_hash"] == one_shot.manifest.plan_hash
    assert (inspected["jets"], inspected["shards"], inspected["bytes"], inspected["class_counts"]) == \
        (one_shot.manifest.n_jets, 5, one_shot.manifest.bytes, one_shot.manifest.class_counts)

    with pytest.raises(DatasetError, match=r"computed on another version of the data .*rerun `jetstore stats`"):
        read_stats(dataset, config.hash)  # the stats before the append are stale
    exported = cli("export-weaver", str(out), "--config", str(CONFIG), "-o", str(tmp_path / "w.yaml"))
    assert exported.returncode == 4 and "rerun `jetstore stats`" in exported.stderr
    grown = compute_stats(dataset, config, dask_client, log=lambda _: None)  # reuses the old shards' pass 1
    after = {p.name: p.stat().st_mtime_ns for p in (out / "_stats").rglob("*.pass1.npz")}
    assert len(after) == 5 and all(after[name] == mtime for name, mtime in cached.items())
    fresh = compute_stats(one_shot, config, dask_client, log=lambda _: None, reuse=False)
    assert grown.variables == fresh.variables and grown.jets_selected == fresh.jets_selected
    for label, table in fresh.weight_tables.items():
        np.testing.assert_array_equal(grown.weight_tables[label], table)
        np.testing.assert_array_equal(grown.class_hists[label], fresh.class_hists[label])

    again = run_convert(dask_client, sample_files, out, jets_per_shard=500)  # the plain command of all inputs
    assert (again.written, again.reused) == (0, 5) and again.manifest.version == 2


def test_inputs_already_in_the_dataset_are_skipped_or_refused(dask_client, sample_files, one_shot, tmp_path):
    out = tmp_path / "ds"
    shutil.copytree(one_shot.url, out)
    messages: list[str] = []
    copy = tmp_path / "copy_of_a.root"
    shutil.copy(sample_files[0], copy)
    report = convert([sample_files[1], str(copy)], "cms_ak4", str(out), jets_per_shard=500, append=True,
                     client=dask_client, progress=False, log=messages.append)
    assert report.ok and report.written == 0 and report.manifest.version == 1  # nothing written, no new version
    assert f"{sample_files[1]}: already in the dataset; skipped" in messages
    assert f"{copy}: already in the dataset as {sample_files[0]} (the same content); skipped" in messages
    assert any("nothing to append" in m for m in messages)
    assert not (out / "_manifests" / "2.json").exists()

    replaced = tmp_path / "b.root"  # an input rewritten at its URL since the conversion
    shutil.copy(sample_files[1], replaced)
    assert run_convert(dask_client, [replaced], tmp_path / "other", jets_per_shard=500).ok
    shutil.copy(sample_files[0], replaced)
    report = run_convert(dask_client, [replaced], tmp_path / "other", jets_per_shard=500, append=True)
    assert not report.ok and "already in the dataset with other content" in report.failures[str(replaced)]
    assert Dataset.open(str(tmp_path / "other")).manifest.version == 1


def test_append_refuses_what_does_not_fit(dask_client, sample_files, one_shot, tmp_path):
    with pytest.raises(DatasetError, match="no dataset to append to; convert without --append first"):
        run_convert(dask_client, sample_files[:1], tmp_path / "none", jets_per_shard=500, append=True)
    with pytest.raises(DatasetError, match="the dataset has --jets-per-shard 500; --append needs the same"):
        run_convert(dask_client, sample_files, one_shot.url, jets_per_shard=800, append=True)
    with pytest.raises(DatasetError, match="the dataset has --format zarr"):
        run_convert(dask_client, sample_files, one_shot.url, "parquet", jets_per_shard=500, append=True)
    with pytest.raises(DatasetError, match="--append needs the same schema, not 'jetclass'"):
        run_convert(dask_client, sample_files, one_shot.url, jets_per_shard=500, append=True, schema="jetclass")
    with pytest.raises(DatasetError, match="pass --append to add inputs to it, or --overwrite to replace it"):
        run_convert(dask_client, sample_files[:1], one_shot.url, jets_per_shard=500)
    both = cli("convert", sample_files[0], "--schema", "cms_ak4", "-o", str(tmp_path / "x"), "--append", "--overwrite")
    assert both.returncode == 2 and "not allowed with argument" in both.stderr


@pytest.mark.slow
def test_killed_mid_append_then_rerun_loses_and_doubles_nothing(dask_client, sample_files, tmp_path):
    """kill -9 of the appending convert (its LocalCluster dies with it), then the same command again."""
    out = tmp_path / "ds"
    assert run_convert(dask_client, sample_files[:1], out, jets_per_shard=50).ok  # 30 shards
    before = shard_files(out)
    command = [sys.executable, "-m", "jetstore", "convert", sample_files[1], "--schema", "cms_ak4", "--output",
               str(out), "--jets-per-shard", "50", "--workers", "1", "--no-progress", "--append"]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and len(list((out / "_commits").glob("*.json"))) < 33:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    committed = len(list((out / "_commits").glob("*.json"))) - 30
    assert 3 <= committed < 20 and not (out / "_manifests" / "2.json").exists()
    assert Dataset.open(str(out)).manifest.version == 1  # the dataset as it was: readable throughout

    result = cli(*command[3:])
    assert result.returncode == 0, result.stderr
    assert "took over the write lease" in result.stderr
    written, reused = map(int, re.search(r"shards: (\d+) written, (\d+) reused", result.stderr).groups())
    assert reused >= committed - 1 and written + reused == 20
    dataset = Dataset.open(str(out))
    assert dataset.manifest.version == 2 and len(dataset.manifest.shards) == 50
    assert len(os.listdir(out / "shards")) == 50 and len(os.listdir(out / "_commits")) == 50
    assert {name: shard_files(out)[name] for name in before} == before
    assert not (out / ".staging").exists() and json.loads((out / "_lease.json").read_text())["state"] == "released"
    clean = tmp_path / "clean" / out.name  # the same dataset name: shards are named after it
    assert run_convert(dask_client, sample_files, clean, jets_per_shard=50).ok
    assert content(dataset) == content(Dataset.open(str(clean)))  # identical to an uninterrupted one-shot run
    assert_table_matches(dataset.read_all(), reference_for(dataset), dataset.schema)


def test_a_format_2_manifest_is_read_and_rerun(dask_client, sample_files, one_shot, tmp_path):
    """Datasets written before input kinds and versions (format 2: a ROOT uuid per input) open as they are,
    and a rerun reuses their shards (ROOT shard keys did not change), writing the manifest in format 3."""
    from jetstore.dataset.manifest import FORMAT_VERSION, _checksum

    out = tmp_path / "old"
    shutil.copytree(one_shot.url, out)
    shutil.rmtree(out / "_manifests")
    data = json.loads((out / "_manifest.json").read_text())
    data = {k: v for k, v in data.items() if k not in ("version", "checksum")}
    data.update(format_version=2, inputs=[{"url": i["url"], "entries": i["entries"], "size": i["size"],
                                           "uuid": i["identity"]} for i in data["inputs"]])
    (out / "_manifest.json").write_text(json.dumps({**data, "checksum": _checksum(data)}))
    old = Dataset.open(str(out)).manifest
    assert old.format_version == 2 and old.version == 1 and [i.kind for i in old.inputs] == ["root", "root"]
    assert old.inputs == one_shot.manifest.inputs
    again = run_convert(dask_client, sample_files, out, jets_per_shard=500)
    assert (again.written, again.reused) == (0, 5)
    assert json.loads((out / "_manifest.json").read_text())["format_version"] == FORMAT_VERSION
