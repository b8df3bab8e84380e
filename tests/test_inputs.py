"""Input kinds: the bundled ROOT sample rewritten as Parquet (``ak.to_parquet``) and as weaver-style HDF5 (h5py)
converts to the same jets (values, counts, order); NanoAOD-style per-event Parquet (coffea skims: lists of
records) converts like the ROOT file it came from; kinds are told by content; identities; named failures."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import awkward as ak
import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import uproot
import xxhash
import yaml

from jetstore.conversion.infer import infer_schema
from jetstore.conversion.read import inspect_input
from jetstore.errors import InputError
from jetstore.schema import load_schema, schema_from_dict
from jetstore.store.dataset import Dataset
from tests.conftest import SHARED
from tests.fixtures.rewrite_sample import to_hdf5, to_parquet
from tests.helpers import REPO, cli, nano_collections, run_convert

KINDS = ("root", "parquet", "hdf5")


@pytest.fixture(scope="module")
def libraries(tmp_path_factory, sample_files) -> dict[str, list[str]]:
    """kind → the two bundled sample files in that kind."""
    base = tmp_path_factory.mktemp("kinds")
    out: dict[str, list[str]] = {"root": list(sample_files), "parquet": [], "hdf5": []}
    for path in sample_files:
        stem = path.rsplit("/", 1)[-1].removesuffix(".root")
        out["parquet"].append(str(base / f"{stem}.parquet"))
        out["hdf5"].append(str(base / f"{stem}.h5"))
        to_parquet(path, out["parquet"][-1], row_group=400)
        to_hdf5(path, out["hdf5"][-1])
    return out


@pytest.fixture(scope="module")
def converted(dask_client, libraries, tmp_path_factory) -> dict[str, Dataset]:
    base = tmp_path_factory.mktemp("converted")
    datasets = {}
    for kind, files in libraries.items():
        report = run_convert(dask_client, files, base / f"{kind}.zarr", jets_per_shard=700)
        assert report.ok, report.failures
        datasets[kind] = Dataset.open(str(base / f"{kind}.zarr"))
    return datasets


@pytest.mark.parametrize("kind", ["parquet", "hdf5"])
def test_same_jets_as_the_root_conversion(converted, kind):
    ours, root = converted[kind], converted["root"]
    mine, theirs = ours.read_all(), root.read_all()
    assert mine.n_jets == theirs.n_jets > 2000
    assert mine.jets.keys() == theirs.jets.keys()
    for name, values in theirs.jets.items():  # every jet column, the labels and _entry: values and order
        np.testing.assert_array_equal(mine.jets[name], values, err_msg=name)
        assert mine.jets[name].dtype == values.dtype, name
    for block, data in theirs.blocks.items():
        np.testing.assert_array_equal(mine.blocks[block].counts, data.counts, err_msg=block)
        for name, values in data.features.items():
            np.testing.assert_array_equal(mine.blocks[block].features[name], values, err_msg=name)
    shards = [(s.name.split(".")[1], s.n_jets, s.class_counts, s.node_counts, s.pieces[0].entry_start)
              for s in ours.manifest.shards]
    assert shards == [(s.name.split(".")[1], s.n_jets, s.class_counts, s.node_counts, s.pieces[0].entry_start)
                      for s in root.manifest.shards]  # the same shards, numbered alike (names: <dataset>.<number>)
    assert ours.manifest.columns == root.manifest.columns and ours.manifest.plan_hash != root.manifest.plan_hash
    assert [i.kind for i in ours.manifest.inputs] == [kind, kind]


def test_each_kind_records_its_content_identity(converted, libraries):
    root = converted["root"].manifest.inputs[0]
    assert root.identity == str(uproot.open(libraries["root"][0]).file.uuid)
    data = Path(libraries["parquet"][0]).read_bytes()
    (length,) = struct.unpack("<I", data[-8:-4])
    assert converted["parquet"].manifest.inputs[0].identity == \
        xxhash.xxh3_128_hexdigest(data[-8 - length:-8])  # the footer
    hdf5 = converted["hdf5"].manifest.inputs[0]
    data = Path(libraries["hdf5"][0]).read_bytes()
    assert hdf5.identity == xxhash.xxh3_128_hexdigest(data) and hdf5.size == len(data)


def test_an_hdf5_file_changed_in_place_has_a_new_identity(libraries, tmp_path):
    copy = tmp_path / "copy.h5"
    shutil.copy(libraries["hdf5"][0], copy)
    schema = load_schema("cms_ak4")
    before = inspect_input(str(copy), schema, {})
    with h5py.File(copy, "r+") as handle:  # same size, same metadata: only the bytes say it changed
        handle["jet_pt"][0] = handle["jet_pt"][0] + 1
    after = inspect_input(str(copy), schema, {})
    assert before.size == after.size and before.identity != after.identity and after.kind == "hdf5"


def test_schema_infer_reads_every_kind_alike(libraries):
    inferred = {kind: infer_schema(files, name="ak4") for kind, files in libraries.items()}
    root, skipped = inferred["root"]
    assert root["source"] == "root" and root["tree"] == "Events" and skipped == []
    for kind in ("parquet", "hdf5"):
        data, skipped = inferred[kind]
        assert data["source"] == kind and "tree" not in data and skipped == []
        assert {k: v for k, v in data.items() if k not in ("source", "tree")} == \
            {k: v for k, v in root.items() if k not in ("source", "tree")}
        schema_from_dict(data)
    with pytest.raises(Exception, match=r"sample_cms_ak4_b.parquet: is a Parquet file, but .*a.root is a ROOT file"):
        infer_schema([libraries["root"][0], libraries["parquet"][1]])


def test_cli_infer_then_convert_a_parquet_library(dask_client, libraries, tmp_path):
    schema = tmp_path / "mine.yaml"
    assert cli("schema", "infer", *libraries["parquet"], "-o", str(schema)).returncode == 0
    assert "source: parquet" in schema.read_text()
    assert run_convert(dask_client, libraries["parquet"], tmp_path / "ds", schema=str(schema)).ok
    summary = cli("inspect", str(tmp_path / "ds"))
    assert summary.returncode == 0 and "from 2 input(s) (parquet)" in summary.stdout


def test_the_content_tells_the_kind_and_the_schema_source_must_agree(libraries, tmp_path):
    disguised = tmp_path / "looks_like.root"
    shutil.copy(libraries["parquet"][0], disguised)
    schema = load_schema("cms_ak4")
    assert inspect_input(str(disguised), schema, {}).kind == "parquet"
    strict = schema_from_dict({**schema.to_dict(), "source": "root"})
    with pytest.raises(InputError, match=r"looks_like\.root: is a Parquet file, but the schema's source is 'root'"):
        inspect_input(str(disguised), strict, {})
    text = tmp_path / "notes.txt"
    text.write_text("neither ROOT nor Parquet nor HDF5\n")
    with pytest.raises(InputError, match=r"notes.txt: not a file jetstore reads \(ROOT, Parquet, HDF5"):
        inspect_input(str(text), schema, {})
    no_tree = schema_from_dict({k: v for k, v in schema.to_dict().items() if k != "tree"})
    assert inspect_input(libraries["hdf5"][0], no_tree, {}).entries == 1500  # only ROOT needs a tree
    with pytest.raises(InputError, match="is a ROOT file; the schema must name its 'tree'"):
        inspect_input(libraries["root"][0], no_tree, {})
    with pytest.raises(Exception, match="missing required key 'tree'"):
        schema_from_dict({**no_tree.to_dict(), "source": "root"})
    with pytest.raises(Exception, match="source 'csv' is not an input kind jetstore reads"):
        inspect_input(libraries["root"][0], schema_from_dict({**schema.to_dict(), "source": "csv"}), {})


def test_bad_parquet_and_hdf5_inputs_are_named(libraries, tmp_path):
    schema = load_schema("cms_ak4")
    table = pq.read_table(libraries["parquet"][0])
    pq.write_table(table.drop_columns(["jet_pfcand_dz"]), tmp_path / "missing.parquet")
    with pytest.raises(InputError, match="the Parquet file has no column 'jet_pfcand_dz'; did you mean"):
        inspect_input(str(tmp_path / "missing.parquet"), schema, {})
    pq.write_table(table.set_column(table.schema.get_field_index("jet_sv_mass"), "jet_sv_mass",
                                    pa.array(np.ones(len(table), np.float32))), tmp_path / "scalar.parquet")
    with pytest.raises(InputError, match="column 'jet_sv_mass' has type float; block 'sv' needs a list of numbers"):
        inspect_input(str(tmp_path / "scalar.parquet"), schema, {})
    pt = table.column("jet_pt").to_pylist()
    pt[1234] = None
    pq.write_table(table.set_column(table.schema.get_field_index("jet_pt"), "jet_pt", pa.array(pt, pa.float32())),
                   tmp_path / "nulls.parquet")
    info = inspect_input(str(tmp_path / "nulls.parquet"), schema, {})  # nullable, but only reading finds the null
    from jetstore.conversion.read import read_range

    with pytest.raises(InputError, match="column 'jet_pt' holds a null \\(missing value\\) at entry 1234"):
        list(read_range(info, schema, 0, 1500, {}, 1000))
    broken = tmp_path / "offsets.h5"
    shutil.copy(libraries["hdf5"][0], broken)
    with h5py.File(broken, "r+") as handle:
        del handle["jet_sv_offsets"]
        handle["jet_sv_offsets"] = np.zeros(10, np.int64)
    with pytest.raises(InputError, match=r"dataset 'jet_sv_\w+': offsets 'jet_sv_offsets' must be 1501 integers"):
        inspect_input(str(broken), schema, {})
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(Path(libraries["hdf5"][0]).read_bytes()[:5000])
    with pytest.raises(InputError, match=r"truncated\.h5: cannot open as an HDF5 file"):
        inspect_input(str(truncated), schema, {})


PER_EVENT = {
    "collection": "Jet",
    "jets": [{"name": "event", "dtype": "int64"}, {"name": "ijet", "expr": "jet_index", "dtype": "int16"},
             {"name": "jet_pt", "branch": "Jet_pt"}],
    "labels": [{"name": "label_b", "expr": "Jet_hadronFlavour == 5", "dtype": "int8"}],
    "blocks": {"pf": {"link": {"collection": "PFCands", "jet": "JetPFCands_jetIdx", "node": "JetPFCands_pFCandsIdx"},
                      "features": ["PFCands_pt", {"name": "pf_deta", "expr": "PFCands_eta - Jet_eta"}]}},
}


def per_event_arrays(events: int = 40, seed: int = 3) -> dict[str, ak.Array]:
    """NanoAOD-style collections: jets, PF candidates and the link table saying which belong to which jet."""
    rng = np.random.default_rng(seed)
    n_jets, n_pf = rng.integers(0, 5, events), rng.integers(0, 30, events)
    links = [[(j, p) for p in range(n) for j in [rng.integers(-1, nj)] if nj and j >= 0]
             for nj, n in zip(n_jets, n_pf, strict=True)]

    def jagged(counts, values):
        return ak.unflatten(np.asarray(values), counts)

    return {
        "event": ak.Array(np.arange(events, dtype=np.int64) + 100),
        "Jet": ak.zip({"pt": jagged(n_jets, rng.exponential(40, n_jets.sum()).astype(np.float32)),
                       "eta": jagged(n_jets, rng.normal(0, 1.5, n_jets.sum()).astype(np.float32)),
                       "hadronFlavour": jagged(n_jets, rng.choice([0, 4, 5], n_jets.sum()).astype(np.int32))}),
        "PFCands": ak.zip({"pt": jagged(n_pf, rng.exponential(3, n_pf.sum()).astype(np.float32)),
                           "eta": jagged(n_pf, rng.normal(0, 1.5, n_pf.sum()).astype(np.float32))}),
        "JetPFCands": ak.zip({"jetIdx": ak.Array([[j for j, _ in e] for e in links]),
                              "pFCandsIdx": ak.Array([[p for _, p in e] for e in links])}),
    }


def test_per_event_parquet_converts_like_its_root_file(dask_client, tmp_path):
    """A coffea-style skim (lists of records, no counters) and the NanoAOD-style ROOT file of the same events."""
    arrays = per_event_arrays()
    arrays["JetPFCands"] = ak.zip({k: ak.values_astype(arrays["JetPFCands"][k], np.int32)
                                   for k in ("jetIdx", "pFCandsIdx")})
    with uproot.recreate(tmp_path / "events.root") as out:  # uproot writes nJet, Jet_pt, ... as NanoAOD does
        out.mktree("Events", {k: v.type for k, v in arrays.items()}).extend(arrays)
    ak.to_parquet(ak.zip(arrays, depth_limit=1), tmp_path / "events.parquet")
    schema = tmp_path / "per_event.yaml"
    schema.write_text(yaml.safe_dump({"tree": "Events", **PER_EVENT}))
    tables = {}
    for kind in ("root", "parquet"):
        report = run_convert(dask_client, [tmp_path / f"events.{kind}"], tmp_path / f"{kind}.zarr",
                             schema=str(schema), jets_per_shard=15)
        assert report.ok, report.failures
        tables[kind] = Dataset.open(str(tmp_path / f"{kind}.zarr")).read_all()
    root, parquet = tables["root"], tables["parquet"]
    assert root.n_jets == int(ak.sum(ak.num(arrays["Jet"]))) > 50
    for name in root.jets:
        np.testing.assert_array_equal(parquet.jets[name], root.jets[name], err_msg=name)
    np.testing.assert_array_equal(parquet.blocks["pf"].counts, root.blocks["pf"].counts)
    assert root.blocks["pf"].counts.sum() == int(ak.sum(ak.num(arrays["JetPFCands"])))
    for name in ("PFCands_pt", "pf_deta"):
        np.testing.assert_array_equal(parquet.blocks["pf"].features[name], root.blocks["pf"].features[name])


@pytest.mark.shared
def test_pfnano_as_a_coffea_parquet_skim(dask_client, tmp_path):
    pfnano = SHARED / "data" / "cms_nano" / "pfnano.root"
    if not pfnano.exists():
        pytest.skip("../shared/data/cms_nano is not present")
    schema = load_schema("nano_ak4")
    branches = uproot.open(pfnano)["Events"].arrays(sorted(schema.branches), library="ak")
    flat, collections = nano_collections(branches)
    skim = ak.zip({**flat, **{prefix: ak.zip(fields) for prefix, fields in collections.items()}}, depth_limit=1)
    ak.to_parquet(skim, tmp_path / "skim.parquet")
    assert infer_schema([str(tmp_path / "skim.parquet")])[0]["name"] == "nano_ak4"  # recognised as NanoAOD
    for source, out in ((pfnano, "root.zarr"), (tmp_path / "skim.parquet", "parquet.zarr")):
        assert run_convert(dask_client, [source], tmp_path / out, schema="nano_ak4").ok
    root, parquet = (Dataset.open(str(tmp_path / o)).read_all() for o in ("root.zarr", "parquet.zarr"))
    assert parquet.n_jets == root.n_jets == 64
    for name in root.jets:
        np.testing.assert_array_equal(parquet.jets[name], root.jets[name], err_msg=name)
    for block, data in root.blocks.items():
        np.testing.assert_array_equal(parquet.blocks[block].counts, data.counts)
        for name, values in data.features.items():
            np.testing.assert_array_equal(parquet.blocks[block].features[name], values, err_msg=name)


def test_hdf5_without_h5py_names_the_extra(libraries, tmp_path):
    """Where h5py is missing (a Dask worker's image, say) the input fails, named, with the extra to install."""
    shim = tmp_path / "shim" / "h5py"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'h5py'\", name='h5py')\n")
    probe = ("import sys; from jetstore import load_schema; from jetstore.conversion.read import inspect_task; "
             "print(inspect_task(sys.argv[1], load_schema('cms_ak4'), {}).reason)")
    result = subprocess.run([sys.executable, "-c", probe, libraries["hdf5"][0]], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join([str(shim.parent), str(REPO)])})
    assert result.stdout.strip() == "reading HDF5 needs h5py, an optional dependency: pip install 'jetstore[hdf5]'"


def test_hdf5_padded_2d_datasets_are_fixed_length_lists(tmp_path):
    """weaver's padded arrays (entries, k): k values per jet; other-length and string datasets are left out."""
    from jetstore.conversion.read import read_range

    rng = np.random.default_rng(1)
    pt, parts = rng.exponential(50, 30).astype(">f4"), rng.normal(size=(30, 4)).astype(np.float32)  # big-endian too
    with h5py.File(tmp_path / "padded.h5", "w") as out:
        out["jet_pt"], out["part_px"], out["label_a"] = pt, parts, np.ones(30, np.int8)
        out["meta"], out["name"] = np.arange(3), np.array([b"x"] * 30)
    data, skipped = infer_schema(str(tmp_path / "padded.h5"))
    assert data["blocks"] == {"part": {"features": ["part_px"]}} and sorted(skipped) == ["meta", "name"]
    schema = schema_from_dict(data)
    info = inspect_input(str(tmp_path / "padded.h5"), schema, {})
    table = next(read_range(info, schema, 0, 30, {}, 100))
    np.testing.assert_array_equal(table.blocks["part"].counts, np.full(30, 4))
    np.testing.assert_array_equal(table.blocks["part"].features["part_px"], parts.ravel())
    np.testing.assert_array_equal(np.sort(table.jets["jet_pt"]), np.sort(pt.astype(np.float32)))
