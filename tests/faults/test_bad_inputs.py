"""Bad inputs give clear, named failures; good inputs still convert; no manifest and no partial shard."""

import json
import os
import shutil
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot

from jetstore.dataset.dataset import Dataset
from jetstore.errors import InputError
from tests.conftest import reference_jets
from tests.helpers import cli, run_convert


def write_variant(path, source, drop=(), replace=None):
    """Rewrite ``source`` with uproot, dropping branches or replacing some with other arrays."""
    with uproot.open(source) as handle:
        arrays = handle["Events"].arrays(library="ak", how=dict)
    for name in drop:
        arrays.pop(name)
    arrays.update({k: ak.Array(v) for k, v in (replace or {}).items()})
    with uproot.recreate(path) as out:
        out.mktree("Events", {k: getattr(v.type, "content", v.type) for k, v in arrays.items()})
        out["Events"].extend(arrays)
    return str(path)


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory, sample_files):
    """name → (path, fragment of the expected message)."""
    base = tmp_path_factory.mktemp("bad")
    good = sample_files[1]
    data = Path(good).read_bytes()
    (base / "truncated.root").write_bytes(data[: len(data) // 2])
    (base / "empty.root").write_bytes(b"")
    (base / "text.root").write_text("this is not a ROOT file\n" * 100)
    with uproot.recreate(base / "other_tree.root") as out:
        out.mktree("Jets", {"jet_pt": np.float32})
        out["Jets"].extend({"jet_pt": np.arange(5, dtype=np.float32)})
    missing = write_variant(base / "missing_branch.root", good, drop=["jet_pfcand_dz"])
    with uproot.open(good) as handle:
        jagged = handle["Events"]["jet_pfcand_pt_log"].array()
        n = handle["Events"].num_entries
    wrong_scalar = write_variant(base / "vector_jet_pt.root", good, replace={"jet_pt": jagged})
    wrong_vector = write_variant(base / "scalar_sv.root", good, replace={"jet_sv_mass": np.ones(n, np.float32)})
    return {
        "truncated": (str(base / "truncated.root"), "cannot open as a ROOT file"),
        "empty": (str(base / "empty.root"), "cannot open as a ROOT file"),
        "not_root": (str(base / "text.root"), "cannot open as a ROOT file"),
        "missing_file": (str(base / "does_not_exist.root"), "no such file"),
        "wrong_tree": (str(base / "other_tree.root"), "no TTree 'Events' (trees in file: Jets)"),
        "missing_branch": (missing, "no branch 'jet_pfcand_dz'; did you mean"),
        "vector_as_scalar": (wrong_scalar, "jet column 'jet_pt' needs one number per jet"),
        "scalar_as_vector": (wrong_vector, "block 'sv' needs a std::vector of numbers"),
    }


@pytest.mark.slow
def test_each_bad_input_is_named_and_good_ones_convert(dask_client, sample_files, bad_inputs, tmp_path):
    out = tmp_path / "ds"
    inputs = [sample_files[0], *(path for path, _ in bad_inputs.values()), sample_files[1]]
    report = run_convert(dask_client, inputs, out)
    assert not report.ok and report.manifest is None and not (out / "_manifest.json").exists()
    assert len(report.failures) == len(bad_inputs)
    for name, (path, fragment) in bad_inputs.items():
        assert fragment in report.failures[path], (name, report.failures[path])
    assert report.written == 1  # the two good inputs, packed into one shard, are committed, ready for the rerun
    assert len(os.listdir(out / "_commits")) == 1 and len(os.listdir(out / "shards")) == 1
    assert not list((out / ".staging").glob("*")) if (out / ".staging").exists() else True


@pytest.mark.slow
def test_cli_exit_code_summary_and_skip_bad_inputs(sample_files, bad_inputs, tmp_path):
    out = tmp_path / "ds"
    bad = [bad_inputs["truncated"][0], bad_inputs["missing_branch"][0]]
    args = ["convert", sample_files[0], *bad, "--schema", "cms_ak4", "--output", str(out), "--workers", "2",
            "--no-progress"]
    result = cli(*args)
    assert result.returncode == 1
    assert "2 input(s) failed" in result.stderr and "no manifest written" in result.stderr
    assert "missing_branch.root: tree 'Events' has no branch 'jet_pfcand_dz'" in result.stderr
    assert "Traceback" not in result.stderr
    skipped = cli(*args, "--skip-bad-inputs")
    assert skipped.returncode == 1 and "shards: 0 written, 1 reused" in skipped.stderr
    dataset = Dataset.open(str(out))
    assert sorted(dataset.manifest.skipped_inputs) == sorted(bad)
    assert [i.url for i in dataset.manifest.inputs] == [sample_files[0]]
    assert dataset.manifest.n_jets == len(reference_jets(sample_files[:1]))


def test_broken_input_mid_file_fails_the_whole_input(dask_client, sample_files, tmp_path):
    """A file whose later baskets are corrupt: its good shard must not be committed into the dataset."""
    data = bytearray(Path(sample_files[0]).read_bytes())
    with uproot.open(sample_files[0]) as handle:
        branch = handle["Events"]["jet_pfcand_energy"]
        start = branch.member("fBasketSeek")[branch.num_baskets - 1]
    data[start + 40:start + 400] = os.urandom(360)
    corrupt = tmp_path / "late_corruption.root"
    corrupt.write_bytes(bytes(data))
    report = run_convert(dask_client, [str(corrupt), sample_files[1]], tmp_path / "ds", jets_per_shard=500,
                         skip_bad_inputs=True)
    assert list(report.failures) == [str(corrupt)]
    assert "cannot read entries" in report.failures[str(corrupt)] or "shard" in report.failures[str(corrupt)]
    assert [i.url for i in report.manifest.inputs] == [sample_files[1]]
    assert {src for s in report.manifest.shards for src in s.sources} == {sample_files[1]}


def test_schema_errors_are_reported_by_the_cli(sample_files, tmp_path):
    schema = tmp_path / "s.yaml"
    schema.write_text("tree: Events\njets: [jet_pt]\nlabels: []\nblokcs: {}\n")
    result = cli("convert", sample_files[0], "--schema", str(schema), "--output", str(tmp_path / "o"))
    assert result.returncode == 2
    assert "unknown key 'blokcs' (did you mean 'blocks'?)" in result.stderr and "Traceback" not in result.stderr
    schema.write_text("tree: Events\nselection: jet_pt.__class__\njets: [jet_pt]\nlabels: []\n")
    result = cli("convert", sample_files[0], "--schema", str(schema), "--output", str(tmp_path / "o"))
    assert result.returncode == 2 and "attribute access" in result.stderr


def test_glob_without_matches_is_a_failure(dask_client, sample_files, tmp_path):
    report = run_convert(dask_client, [sample_files[0], str(tmp_path / "nothing*.root")], tmp_path / "ds")
    assert report.failures == {str(tmp_path / "nothing*.root"): "no file matches this pattern"}


def test_unsafe_casts_are_refused(dask_client, sample_files, tmp_path):
    from jetstore.schema import schema_from_dict

    schema = schema_from_dict({"tree": "Events", "jets": [{"name": "jet_pt", "dtype": "int16"}], "labels": []})
    report = run_convert(dask_client, sample_files[:1], tmp_path / "ds", schema=schema)
    assert "'jet_pt' holds non-integer values; cannot store as int16" in report.failures[sample_files[0]]
    schema = schema_from_dict({"tree": "Events", "jets": [{"name": "x", "expr": "jet_pt * 1e6", "dtype": "float16"}],
                               "labels": []})
    report = run_convert(dask_client, sample_files[:1], tmp_path / "ds2", schema=schema)
    assert "overflows float16" in report.failures[sample_files[0]]


def test_input_error_pickles_with_its_fields():
    import pickle

    error = pickle.loads(pickle.dumps(InputError("f.root", "bad")))
    assert (error.url, error.reason, str(error)) == ("f.root", "bad", "f.root: bad")


def test_staging_leftovers_are_never_listed(dask_client, sample_files, tmp_path):
    out = tmp_path / "ds"
    crashed = out / ".staging" / f"g1-{'c' * 32}" / "tmp1234"  # what a run killed mid-shard leaves
    crashed.mkdir(parents=True)
    (crashed / "half.zarr.zip").write_bytes(b"partial")
    report = run_convert(dask_client, sample_files, out)
    assert report.ok and not (out / ".staging").exists()
    assert all(not s.path.startswith(".staging") for s in report.manifest.shards)
    assert json.loads((out / "_manifest.json").read_text())["totals"]["jets"] == report.manifest.n_jets
    shutil.rmtree(out)
