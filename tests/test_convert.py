"""ROOT → Parquet / Zarr v3 on a real Dask LocalCluster: every value, the manifest, resume, interruption."""

import os
import signal
import subprocess
import sys
import time
import zipfile

import awkward as ak
import numpy as np
import pyarrow.parquet as pq
import pytest
import uproot
import zarr

from jetstore.dataset.dataset import Dataset
from jetstore.dataset.manifest import FORMAT_VERSION
from jetstore.io.checksum import file_checksum
from jetstore.schema import schema_from_dict
from tests.conftest import assert_table_matches, reference_for, reference_jets
from tests.helpers import REPO, cli, run_convert


@pytest.mark.parametrize("fmt", ["zarr", "parquet"])
def test_every_value_round_trips(dask_client, sample_files, tmp_path, fmt):
    report = run_convert(dask_client, sample_files, tmp_path / "ds", fmt, jets_per_shard=700)
    assert report.ok and report.written == 5 and report.reused == 0  # 1500 → 3 shards, 1000 → 2
    dataset = Dataset.open(str(tmp_path / "ds"))
    reference = reference_for(dataset)
    assert_table_matches(dataset.read_all(), reference, dataset.schema)
    manifest = dataset.manifest
    assert manifest.format_version == FORMAT_VERSION and manifest.format == fmt
    assert manifest.n_jets == len(reference) < 2500  # the skim removed jets
    labels = dataset.schema.label_names
    assert manifest.class_counts == {name: int(np.sum(reference[name])) for name in labels}
    assert [i.entries for i in manifest.inputs] == [1500, 1000]
    assert manifest.inputs[0].kind == "root"
    assert manifest.inputs[0].identity == str(uproot.open(sample_files[0]).file.uuid)
    assert manifest.inputs[0].size == os.path.getsize(sample_files[0])
    for shard in manifest.shards:
        path = tmp_path / "ds" / shard.path
        assert shard.files == {"": (path.stat().st_size, file_checksum(dataset.fs, str(path)))}
        assert shard.bytes == path.stat().st_size
    assert sorted(os.listdir(tmp_path / "ds")) == [".jetstore.lock", "_commits", "_lease.json", "_manifest.json",
                                                   "_manifests", "shards", *(["zarr.json"] if fmt == "zarr" else [])]
    assert os.listdir(tmp_path / "ds" / "_manifests") == ["1.json"] and manifest.version == 1


def test_zarr_shard_is_standard_zarr_v3(dask_client, sample_files, tmp_path):
    run_convert(dask_client, sample_files[:1], tmp_path / "ds", "zarr")
    dataset = Dataset.open(str(tmp_path / "ds"))
    path = tmp_path / "ds" / dataset.manifest.shards[0].path
    group = zarr.open_group(zarr.storage.ZipStore(path, mode="r"), mode="r")
    table = dataset.read_shard(dataset.manifest.shards[0])
    assert group.metadata.zarr_format == 3 and group.attrs["n_jets"] == table.n_jets
    np.testing.assert_array_equal(group["jets/jet_pt"][:], table.jets["jet_pt"])
    np.testing.assert_array_equal(group["pfcand/counts"][:], table.blocks["pfcand"].counts)
    # each unit's values start at a chunk boundary (attributes unit_offsets); the rest of its last chunk is padding
    counts, unit = group["pfcand/counts"][:], group.attrs["unit_jets"]
    starts = np.asarray(group.attrs["unit_offsets"]["pfcand"])
    units = np.arange(len(counts)) // unit
    within = np.cumsum(counts) - counts - (np.cumsum(counts) - counts)[units * unit]
    first = starts[units] + within
    index = np.concatenate([np.arange(a, a + n) for a, n in zip(first, counts, strict=True)])
    values = group["pfcand/jet_pfcand_dxy"][:]
    np.testing.assert_array_equal(values[index], table.blocks["pfcand"].features["jet_pfcand_dxy"])
    assert len(values) == starts[-1] and len(values) % group["pfcand/jet_pfcand_dxy"].chunks[0] == 0
    codecs = group["pfcand/jet_pfcand_dxy"].metadata.to_dict()["codecs"]
    assert codecs[1]["name"] == "blosc" and codecs[1]["configuration"]["cname"] == "zstd"
    assert all(info.compress_type == zipfile.ZIP_STORED for info in zipfile.ZipFile(path).infolist())


def test_parquet_shard_layout(dask_client, sample_files, tmp_path):
    run_convert(dask_client, sample_files[:1], tmp_path / "ds", "parquet")
    dataset = Dataset.open(str(tmp_path / "ds"))
    meta = pq.ParquetFile(tmp_path / "ds" / dataset.manifest.shards[0].path).metadata
    assert meta.num_rows == dataset.manifest.n_jets
    column = meta.row_group(0).column(meta.schema.names.index("jet_pt"))
    assert column.compression == "ZSTD"
    arrow_type = pq.read_schema(tmp_path / "ds" / dataset.manifest.shards[0].path).field("jet_pfcand_dxy").type
    assert str(arrow_type) == "list<element: float not null>"


def test_derived_columns_and_reduced_precision(dask_client, sample_files, tmp_path):
    schema = schema_from_dict({
        "tree": "Events", "selection": "ak.num(jet_pfcand_dxy) >= 3",
        "jets": ["jet_pt", {"name": "jet_pt_log", "expr": "np.log(jet_pt)"},
                 {"name": "n_charged", "expr": "ak.sum(jet_pfcand_charge != 0, axis=1)", "dtype": "int16"}],
        "labels": [{"name": "label_b", "dtype": "bool"}],
        "blocks": {"pfcand": {"features": [
            {"name": "jet_pfcand_dxy", "dtype": "float16"},
            {"name": "jet_pfcand_charge", "dtype": "int8"},
            {"name": "dxy_t", "expr": "np.tanh(jet_pfcand_dxy * 10)"}]}},
    })
    for fmt in ("zarr", "parquet"):
        assert run_convert(dask_client, sample_files, tmp_path / fmt, fmt, schema=schema).ok
        table = Dataset.open(str(tmp_path / fmt)).read_all()
        ref = reference_jets(sample_files, selection=None)
        ref = ref[ak.to_numpy(ak.num(ref["jet_pfcand_dxy"])) >= 3]
        dxy = ak.to_numpy(ak.flatten(ref["jet_pfcand_dxy"]))
        assert table.n_jets == len(ref)
        np.testing.assert_allclose(table.jets["jet_pt_log"], np.log(ak.to_numpy(ref["jet_pt"])), rtol=1e-6)
        n_charged = ak.to_numpy(ak.sum(ref["jet_pfcand_charge"] != 0, axis=1))
        np.testing.assert_array_equal(table.jets["n_charged"], n_charged)
        assert table.jets["n_charged"].dtype == np.int16 and table.jets["label_b"].dtype == np.bool_
        features = table.blocks["pfcand"].features
        assert features["jet_pfcand_dxy"].dtype == np.float16
        np.testing.assert_allclose(features["jet_pfcand_dxy"], dxy, rtol=1e-3, atol=1e-7)  # float16 precision
        np.testing.assert_array_equal(features["jet_pfcand_charge"], ak.to_numpy(ak.flatten(ref["jet_pfcand_charge"])))
        np.testing.assert_allclose(features["dxy_t"], np.tanh(dxy * 10), rtol=1e-6)


def test_rerun_reuses_verified_shards_and_redoes_damaged_ones(dask_client, sample_files, tmp_path):
    out = tmp_path / "ds"
    first = run_convert(dask_client, sample_files, out, jets_per_shard=500)
    assert first.written == 5
    again = run_convert(dask_client, sample_files, out, jets_per_shard=500)
    assert (again.written, again.reused) == (0, 5)
    assert [s.checksum for s in again.manifest.shards] == [s.checksum for s in first.manifest.shards]
    damaged = out / first.manifest.shards[2].path
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))
    (out / first.manifest.shards[4].path).unlink()
    third = run_convert(dask_client, sample_files, out, jets_per_shard=500)
    assert (third.written, third.reused) == (2, 3)
    assert [s.checksum for s in third.manifest.shards] == [s.checksum for s in first.manifest.shards]
    dataset = Dataset.open(str(out))
    assert_table_matches(dataset.read_all(), reference_for(dataset), dataset.schema)


def test_changed_options_refuse_without_overwrite(dask_client, sample_files, tmp_path):
    out = tmp_path / "ds"
    run_convert(dask_client, sample_files, out, jets_per_shard=500)
    from jetstore.errors import DatasetError
    with pytest.raises(DatasetError, match="--overwrite"):
        run_convert(dask_client, sample_files, out, jets_per_shard=800)
    report = run_convert(dask_client, sample_files, out, jets_per_shard=800, overwrite=True)
    assert report.written == 4 and len(os.listdir(out / "shards")) == 4 and len(os.listdir(out / "_commits")) == 4


@pytest.mark.slow
def test_interrupted_run_resumes_without_loss_or_duplicates(dask_client, sample_files, tmp_path):
    """Kill the client process mid-run (its LocalCluster dies with it), then rerun the same command."""
    out = tmp_path / "ds"
    command = [sys.executable, "-m", "jetstore", "convert", *sample_files, "--schema", "cms_ak4", "--output",
               str(out), "--jets-per-shard", "100", "--workers", "1", "--no-progress"]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        commits = list((out / "_commits").glob("*.json")) if (out / "_commits").exists() else []
        if len(commits) >= 5:
            break
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    done_before = len(list((out / "_commits").glob("*.json")))
    assert 5 <= done_before < 25 and not (out / "_manifest.json").exists()
    result = cli(*command[3:])
    assert result.returncode == 0, result.stderr
    written, reused = map(int, __import__("re").search(r"shards: (\d+) written, (\d+) reused", result.stderr).groups())
    assert reused >= done_before - 1 and written + reused == 25
    dataset = Dataset.open(str(out))
    assert_table_matches(dataset.read_all(), reference_for(dataset), dataset.schema)
    assert len(os.listdir(out / "shards")) == 25 and not (out / ".staging").exists()
    clean = tmp_path / "clean" / "ds"  # the same dataset name: shards are named after it
    assert run_convert(dask_client, sample_files, clean, jets_per_shard=100).ok
    assert [(s.name, s.checksum) for s in Dataset.open(str(clean)).manifest.shards] == \
        [(s.name, s.checksum) for s in dataset.manifest.shards]  # identical to an uninterrupted run


@pytest.mark.slow
def test_jetclass_schema_converts(dask_client, jetclass_file, tmp_path):
    report = run_convert(dask_client, [jetclass_file], tmp_path / "jc", "zarr", schema="jetclass")
    assert report.ok, report.failures
    dataset = Dataset.open(str(tmp_path / "jc"))
    table = dataset.read_all()
    assert_table_matches(table, reference_for(dataset, skim=None), dataset.schema)
    assert table.jets["label_QCD"].dtype == np.float32


@pytest.mark.shared
@pytest.mark.slow
def test_shared_cms_ak4_library(dask_client, shared_ak4, tmp_path):
    report = run_convert(dask_client, shared_ak4[:2], tmp_path / "ds", "zarr", jets_per_shard=4000)
    assert report.ok
    dataset = Dataset.open(str(tmp_path / "ds"))
    assert_table_matches(dataset.read_all(), reference_for(dataset), dataset.schema)


def test_notices_go_through_logging(dask_client, sample_files, tmp_path, capsys, caplog):
    import logging

    from jetstore import convert
    from jetstore.console import configure_logging

    with caplog.at_level(logging.INFO, logger="jetstore"):  # the API logs; the caller decides where it goes
        convert([str(f) for f in sample_files], "cms_ak4", str(tmp_path / "d.zarr"), client=dask_client,
                progress=False)
    notices = [r for r in caplog.records if r.name == "jetstore.conversion.run"]
    assert any("converting 2 input(s)" in r.getMessage() for r in notices)

    capsys.readouterr()  # what the API wrote through handlers attached before (an earlier CLI run's) is not asked
    shown = logging.getLogger("jetstore.conversion.run")
    configure_logging(0, ["token-1234"])  # the CLI's default: bare lines on stderr, secrets masked
    shown.info("took over the lease with token-1234")
    configure_logging(-1, [])  # -q: errors only
    shown.info("a notice")
    shown.error("an error")
    assert capsys.readouterr().err.splitlines() == ["took over the lease with ***", "an error"]
    configure_logging(0, [])


def test_a_verbose_command_leaves_the_root_logger_as_it_found_it():
    """-v shows every library's records for its own command; the next command in the process (tests, notebooks)
    has the root logger's level back, so its workers stay quiet again."""
    import logging

    from jetstore.console import configure_logging

    root = logging.getLogger()
    before = root.level
    root.setLevel(logging.WARNING)
    try:
        configure_logging(1, [])
        assert root.level == logging.INFO
        configure_logging(2, [])
        assert root.level == logging.DEBUG
        configure_logging(0, [])
        assert root.level == logging.WARNING
        configure_logging(0, [])
        assert root.level == logging.WARNING
    finally:
        root.setLevel(before)  # through setLevel, which clears the loggers' cached levels


@pytest.mark.slow
def test_two_runs_of_the_same_inputs_share_a_cluster(dask_client, sample_files, tmp_path):
    """Two conversions of the same inputs to two outputs at once, on one cluster: each gets its own tasks (a task
    named after its input alone would be handed the other run's result), and both datasets are complete."""
    import threading

    reports = {}

    def run(name: str) -> None:
        reports[name] = run_convert(dask_client, sample_files, tmp_path / f"{name}.zarr", jets_per_shard=300)

    threads = [threading.Thread(target=run, args=(name,)) for name in ("one", "two")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    expected = reference_jets(sample_files)
    for name in ("one", "two"):
        assert reports[name].ok and reports[name].written == len(reports[name].manifest.shards) > 1
        dataset = Dataset.open(str(tmp_path / f"{name}.zarr"))
        assert dataset.manifest.n_jets == len(expected["jet_pt"])
        assert all(dataset.verify(shard) == [] for shard in dataset.manifest.shards)
