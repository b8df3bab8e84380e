"""jetstore deletes only what it can prove is its own: ``--overwrite`` of a folder or bucket holding anything
but a jetstore dataset is refused with one line and touches nothing; clean-up removes only names jetstore
writes; lease and staging identifiers are validated; no path jetstore deletes lies outside the dataset."""

from __future__ import annotations

import json
import os
import shutil
import time

import pytest

from jetstore.errors import DatasetError, StorageError
from jetstore.store import paths
from jetstore.store.backend import check_key, open_backend
from jetstore.store.dataset import Dataset
from tests.helpers import cli, run_convert


def snapshot(folder) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_overwrite_of_a_folder_with_other_files_is_refused(sample_files, tmp_path):
    """`jetstore convert in.root -o . --overwrite`: the folder holds the input itself."""
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(sample_files[0], project / "in.root")
    (project / "notes.txt").write_text("mine")
    (project / "shards").mkdir()
    (project / "shards" / "other-tool.bin").write_bytes(b"not jetstore's")
    before = snapshot(project)
    result = cli("convert", str(project / "in.root"), "--schema", "cms_ak4", "-o", str(project), "--overwrite",
                 "--workers", "1")
    assert result.returncode == 4 and "Traceback" not in result.stderr, result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert "--overwrite refused: it holds files that are not jetstore's (in.root, notes.txt, shards/other-tool.bin)" \
        in line and "nothing was deleted" in line
    assert snapshot(project) == before


def test_overwrite_of_a_bucket_with_other_objects_is_refused(dask_client, sample_files, moto_server, s3_env):
    moto_server.make_bucket("group-bucket")
    s3_env(moto_server)
    backend = open_backend("s3://group-bucket")
    backend.put("analysis/plots.pdf", b"%PDF")
    with pytest.raises(DatasetError, match=r"s3://group-bucket: --overwrite refused: .*\(analysis\)"):
        run_convert(dask_client, sample_files[:1], "s3://group-bucket", overwrite=True)
    assert backend.read("analysis/plots.pdf") == b"%PDF"


def test_overwrite_replaces_a_jetstore_dataset_only_at_commit(dask_client, sample_files, tmp_path):
    out = tmp_path / "ds"
    first = run_convert(dask_client, sample_files[:1], out, jets_per_shard=1000).manifest
    second = run_convert(dask_client, sample_files[:1], out, jets_per_shard=700, overwrite=True).manifest
    assert second.generation == first.generation + 1 and len(second.shards) == 3
    assert sorted(os.listdir(out / "shards")) == sorted(s.path.split("/")[1] for s in second.shards)
    assert all(Dataset.open(str(out)).verify(s) == [] for s in second.shards)


def test_clean_up_leaves_other_files_in_shards_alone(dask_client, sample_files, tmp_path):
    out = tmp_path / "ds"
    (out / "shards").mkdir(parents=True)
    foreign = {"notes.txt": b"mine", "other.parquet": b"PAR1", "x.0000000000.0123abcd.zarr.zip.bak": b"backup"}
    for name, data in foreign.items():
        (out / "shards" / name).write_bytes(data)
    report = run_convert(dask_client, sample_files, out, jets_per_shard=1000)
    assert report.ok and len(report.manifest.shards) == 3
    run_convert(dask_client, sample_files, out, jets_per_shard=1000, overwrite=False)  # a rerun: reuse, clean
    for name, data in foreign.items():
        assert (out / "shards" / name).read_bytes() == data


@pytest.mark.parametrize("run_id", ["/home/me/x", "../../victim", "a" * 31 + "/"])
def test_a_lease_naming_a_path_is_refused_and_never_followed(dask_client, sample_files, tmp_path, run_id):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "thesis.tex").write_text("years of work")
    out = tmp_path / "a" / "b" / "ds"
    out.mkdir(parents=True)
    stale = time.time() - 10_000
    (out / paths.LEASE).write_text(json.dumps({"run_id": run_id, "host": "h", "pid": 1, "created": stale,
                                               "renewed": stale}))
    with pytest.raises(DatasetError, match=r"_lease.json is malformed \('run_id' must be 32 hexadecimal digits"):
        run_convert(dask_client, sample_files[:1], out)
    assert run_convert(dask_client, sample_files[:1], out, break_lease=True).ok
    assert (victim / "thesis.tex").read_text() == "years of work"


@pytest.mark.parametrize("key", ["../x", "/etc/passwd", "a/../../x", "a//b", "./a", "", "a\\..\\b"])
def test_keys_outside_the_dataset_are_refused(tmp_path, key):
    with pytest.raises(StorageError, match="refusing the path"):
        check_key(key)
    with pytest.raises(StorageError):
        open_backend(str(tmp_path)).delete([key])


def test_a_symbolic_link_out_of_the_dataset_is_never_followed(dask_client, sample_files, tmp_path):
    out = tmp_path / "ds"
    assert run_convert(dask_client, sample_files, out, jets_per_shard=1000).ok
    victim = tmp_path / "victim"
    victim.mkdir()
    keep = victim / "x.0000000000.0123abcd.g1.json"  # named like a record jetstore would clean up
    keep.write_text("{}")
    shutil.rmtree(out / paths.COMMITS)
    (out / paths.COMMITS).symlink_to(victim)
    with pytest.raises(StorageError, match="leads outside the dataset"):
        run_convert(dask_client, sample_files, out, jets_per_shard=700, overwrite=True)
    assert keep.read_text() == "{}"


def test_a_dataset_of_the_previous_format_is_read_and_resumed(dask_client, sample_files, tmp_path):
    """Written before generations (format_version 2, untagged names, no lease left): read as it is; a rerun
    reuses every shard, and its commit keeps them."""
    from jetstore.store.manifest import _checksum

    out = tmp_path / "ds"
    first = run_convert(dask_client, sample_files, out, jets_per_shard=1000).manifest
    data = json.loads((out / paths.MANIFEST).read_text())
    for shard in data["shards"]:
        (piece,) = shard.pop("pieces")  # format 2: one input per shard, ROOT uuids, no versions
        shard.update(piece)
        old = shard["path"]
        shard["path"] = old.replace(".g1.", ".")
        (out / old).rename(out / shard["path"])
        record = out / paths.COMMITS / f"{shard['name']}.g1.json"
        record.unlink()
        (out / paths.COMMITS / f"{shard['name']}.json").write_text(json.dumps(shard))
    del data["generation"], data["checksum"], data["version"]
    data["inputs"] = [{"url": i["url"], "entries": i["entries"], "size": i["size"], "uuid": i["identity"]}
                      for i in data["inputs"]]
    data["format_version"] = 2
    data["checksum"] = _checksum(data)
    (out / paths.MANIFEST).write_text(json.dumps(data))
    (out / paths.LEASE).unlink()
    shutil.rmtree(out / paths.MANIFESTS)  # format 2 kept no history of versions
    legacy = Dataset.open(str(out))
    assert legacy.manifest.format_version == 2 and legacy.manifest.generation == 0
    assert all(legacy.verify(s) == [] for s in legacy.manifest.shards)
    report = run_convert(dask_client, sample_files, out, jets_per_shard=1000)
    assert report.ok and report.reused == len(first.shards) and report.written == 0
    assert report.manifest.format_version == 3 and report.manifest.generation == 1
    assert {s.path for s in report.manifest.shards} == {s["path"] for s in data["shards"]}
    assert all(Dataset.open(str(out)).verify(s) == [] for s in report.manifest.shards)


def test_a_planted_link_under_a_shard_name_is_removed_not_followed(dask_client, sample_files, tmp_path):
    """A symbolic link out of the dataset under a name jetstore writes: a successful --overwrite unlinks it
    (its target untouched) and removes the old shards (was: exit 3, the old shards left behind)."""
    out, victim = tmp_path / "ds", tmp_path / "victim.txt"
    victim.write_text("keep me")
    assert run_convert(dask_client, sample_files, out, jets_per_shard=1000).ok
    link = out / paths.SHARDS / "planted.0000000000.deadbeef.g1.zarr.zip"
    link.symlink_to(victim)
    report = run_convert(dask_client, sample_files, out, jets_per_shard=700, overwrite=True)
    assert report.ok and victim.read_text() == "keep me" and not os.path.lexists(link)
    assert {f"{paths.SHARDS}/{p.name}" for p in (out / paths.SHARDS).iterdir()} == \
        {s.path for s in report.manifest.shards}


def test_overwrite_removes_what_a_failed_overwrite_left_first(dask_client, sample_files, tmp_path):
    """Shards and records of a failed --overwrite (one of a later generation than the dataset: it died at its
    seal on a full disk, or was killed) are removed before the rerun writes anything, so it does not run out of
    space again; the dataset stays readable until a new one commits."""
    out = tmp_path / "ds"
    first = run_convert(dask_client, sample_files, out, jets_per_shard=1000).manifest
    for shard in first.shards:  # what the failed run of generation 2 left: its committed shards and records
        shutil.copy(out / shard.path, out / shard.path.replace(".g1.", ".g2."))
        record = out / paths.record_of(shard.path)
        shutil.copy(record, str(record).replace(".g1.", ".g2."))
    report = run_convert(dask_client, [sample_files[0], str(tmp_path / "missing.root")], out, jets_per_shard=700,
                         overwrite=True)
    assert report.manifest is None and report.failures  # this rerun fails too: no manifest, but it cleaned up
    left = [p.name for folder in (paths.SHARDS, paths.COMMITS) for p in (out / folder).iterdir()]
    assert not [name for name in left if ".g2." in name], left
    assert Dataset.open(str(out)).manifest == first and all(Dataset.open(str(out)).verify(s) == []
                                                           for s in first.shards)
