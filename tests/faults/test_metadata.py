"""Self-validating metadata: a hand-edited manifest fails its checksum; a consistently re-sealed one with wrong
counts is caught by ``verify`` (counts against the shards' content) or by the manifest's own consistency
rules; malformed manifests and stats are one-line errors naming the file and key, never tracebacks."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest

from jetstore.dataset.dataset import Dataset
from jetstore.errors import DatasetError
from tests.helpers import REPO, cli, run_convert, stats_file


@pytest.fixture(scope="module")
def dataset_dir(dask_client, sample_files, tmp_path_factory):
    out = tmp_path_factory.mktemp("metadata") / "ds.zarr"
    assert run_convert(dask_client, sample_files, out, jets_per_shard=1000).ok
    return out


@pytest.fixture
def copy(dataset_dir, tmp_path):
    target = tmp_path / "copy.zarr"
    shutil.copytree(dataset_dir, target)
    return target


def reseal(root, **changes) -> str:
    """Rewrite the manifest with the first shard's fields changed, sealed with a valid checksum (as a
    careless tool using jetstore would); returns that shard's path."""
    manifest = Dataset.open(str(root)).manifest
    shard = dataclasses.replace(manifest.shards[0], **changes)
    changed = dataclasses.replace(manifest, shards=(shard, *manifest.shards[1:]))
    (root / "_manifest.json").write_text(changed.to_json())
    return shard.path


def edit_json(path, change) -> None:
    data = json.loads(path.read_text())
    path.write_text(json.dumps(change(data)))


def assert_one_line(result, code: int, *fragments: str) -> None:
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


def test_hand_edited_manifest_fails_its_checksum(copy):
    edit_json(copy / "_manifest.json", lambda m: {**m, "shards": [{**m["shards"][0], "n_jets": 1}, *m["shards"][1:]]})
    assert_one_line(cli("verify", str(copy)), 4, "_manifest.json: checksum mismatch")
    assert_one_line(cli("inspect", str(copy)), 4, "checksum mismatch")


def test_inconsistent_counts_are_refused_on_open(copy):
    shard = Dataset.open(str(copy)).manifest.shards[0]
    reseal(copy, n_jets=shard.n_jets - 100)  # its class counts now add up to more
    result = cli("inspect", str(copy))
    assert_one_line(result, 4, "shards[0]: class_counts add up to more than n_jets")


@pytest.mark.parametrize("field", ["n_jets", "class_counts", "node_counts"])
def test_verify_checks_counts_against_the_shard_content(copy, field):
    """Counts changed consistently (they pass every rule of the manifest itself): verify reads the shard."""
    shards = Dataset.open(str(copy)).manifest.shards
    shard = shards[0]
    top = max(shard.class_counts, key=shard.class_counts.get)
    if field == "n_jets":
        changes = {"n_jets": shard.n_jets - 100, "class_counts": {**shard.class_counts,
                                                                  top: shard.class_counts[top] - 100}}
    elif field == "class_counts":
        changes = {"class_counts": {**shard.class_counts, top: shard.class_counts[top] - 7}}
    else:
        block = next(iter(shard.node_counts))
        changes = {"node_counts": {**shard.node_counts, block: shard.node_counts[block] + 7}}
    path = reseal(copy, **changes)
    result = cli("verify", str(copy))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    if field == "n_jets":
        expected = f"{path} is damaged (it holds {shard.n_jets} jets, the manifest says {shard.n_jets - 100})"
    elif field == "node_counts":  # the reader checks node counts against the shard's metadata before reading
        block = next(iter(shard.node_counts))
        expected = (f"{path} is damaged (it holds {shard.node_counts[block]} nodes of block '{block}', the manifest "
                    f"says {shard.node_counts[block] + 7})")
    else:
        expected = f"shard {path}: {field} is"
    assert expected in result.stderr, result.stderr
    assert result.stdout.strip() == f"{len(shards) - 1} of {len(shards)} shard(s) verified"


def test_impossible_counts_are_refused_on_open(copy):
    reseal(copy, n_jets=10**15)  # beyond any dataset: the manifest schema bounds counts
    with pytest.raises(DatasetError, match=r"_manifest.json: .*1000000000\d+ is greater than the maximum"):
        Dataset.open(str(copy))


def test_more_jets_than_input_entries_are_refused_on_open(copy):
    shard = Dataset.open(str(copy)).manifest.shards[0]
    reseal(copy, n_jets=shard.entries + 5)
    with pytest.raises(DatasetError, match=r"shards\[0\]: n_jets \d+ is more than the shard's \d+ input entries"):
        Dataset.open(str(copy))


@pytest.mark.parametrize("content, fragment", [
    ("[1, 2, 3]", "_manifest.json"),
    ('{"format_version": 2, "shards": "many"}', "_manifest.json"),
    ("{not json", "not valid JSON"),
    ("", "not valid JSON"),
])
def test_malformed_manifest_is_one_line(copy, content, fragment):
    (copy / "_manifest.json").write_text(content)
    assert_one_line(cli("inspect", str(copy)), 4, fragment)


def test_mistyped_manifest_field_names_the_key(copy):
    edit_json(copy / "_manifest.json", lambda m: {**m, "shards": [{**m["shards"][0], "n_jets": "many"},
                                                                 *m["shards"][1:]]})
    result = cli("inspect", str(copy))
    assert_one_line(result, 4, "shards", "n_jets")


@pytest.mark.slow
def test_truncated_or_malformed_stats_are_one_line(copy, tmp_path):
    config = tmp_path / "config.yaml"
    shutil.copy(REPO / "tests/fixtures/weaver_cms_ak4.yaml", config)
    assert cli("stats", str(copy), "--config", str(config), "--workers", "1").returncode == 0
    stats = stats_file(copy, config)
    text = stats.read_text()
    out = tmp_path / "exported.yaml"
    for damaged, fragment in ((text[: len(text) // 2], "not valid JSON"), ("[]", "expected a JSON object"),
                              (json.dumps({**json.loads(text), "variables": 3}), "malformed stats at 'variables'")):
        stats.write_text(damaged)
        assert_one_line(cli("export-weaver", str(copy), "--config", str(config), "-o", str(out)), 4,
                        stats.name, fragment)
