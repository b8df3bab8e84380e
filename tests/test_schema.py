import numpy as np
import pytest
import yaml

from jetstore.conversion.infer import infer_schema
from jetstore.errors import SchemaError
from jetstore.schema import load_schema, schema_from_dict

MINIMAL = {"tree": "Events", "jets": ["jet_pt"], "labels": ["label_b"],
           "blocks": {"pfcand": {"features": ["jet_pfcand_dxy"]}}}


def test_bundled_schemas_load():
    cms = load_schema("cms_ak4")
    assert cms.tree == "Events" and [b.name for b in cms.blocks] == ["pfcand", "sv"]
    assert len(cms.block("pfcand").features) == 15 and len(cms.block("sv").features) == 9
    assert cms.label_names[0] == "label_b" and cms.labels[0].dtype == "int8"
    assert cms.selection.names == {"jet_pt", "jet_eta"}
    jetclass = load_schema("jetclass")
    assert jetclass.tree == "tree" and jetclass.blocks[0].name == "part" and len(jetclass.labels) == 10
    assert cms.hash != jetclass.hash and cms.hash == load_schema("cms_ak4").hash


def test_nanoaod_schemas_store_what_cms_ak4_configs_read():
    """nano_ak4 stores every cms_ak4 column, label and block feature under the same name (so one weaver
    data-config trains on both); nano_ak8 is per-event too, with hadron-flavour labels."""
    cms, nano = load_schema("cms_ak4"), load_schema("nano_ak4")
    assert nano.collection == "Jet" and all(block.link is not None for block in nano.blocks)
    assert {c.name for c in cms.jet_columns} <= {c.name for c in nano.jet_columns}
    for block in cms.blocks:
        assert {f.name for f in block.features} <= {f.name for f in nano.block(block.name).features}
    ak8 = load_schema("nano_ak8")
    assert ak8.collection == "FatJet" and ak8.label_names == ("label_b", "label_c", "label_light")
    assert ak8.block("pfcand").link.jet == "FatJetPFCand_jetIdx"


@pytest.mark.parametrize("change, message", [
    ({"treee": "x"}, "unknown key 'treee' (did you mean 'tree'?)"),
    ({"tree": None}, "tree: expected a non-empty string"),
    ({"jets": "jet_pt"}, "jets: expected a list"),
    ({"jets": [{"name": "x", "dtype": "float128"}]}, "dtype 'float128' is not one of"),
    ({"jets": [{"name": "x", "branch": "a", "expr": "a + 1"}]}, "either 'branch' or 'expr'"),
    ({"jets": [{"nmae": "x"}]}, "jets[0]: unknown key 'nmae' (did you mean 'name'?)"),
    ({"jets": ["jet_pt", "jet_pt"]}, "'jet_pt' is used twice"),
    ({"jets": ["jet-pt"]}, "not a valid column name"),
    ({"blocks": {"pfcand": {"features": []}}}, "at least one feature"),
    ({"blocks": {"pfcand": {"feature": ["a"]}}}, "blocks.pfcand: unknown key 'feature'"),
    ({"selection": "__import__('os')"}, "selection: calling"),
    ({"jets": [{"name": "x", "expr": "open('f')"}]}, "jets[0] (x).expr: calling 'open'"),
])
def test_schema_errors_name_the_key(change, message):
    with pytest.raises(SchemaError) as info:
        schema_from_dict(MINIMAL | change, where="s.yaml")
    assert message in str(info.value)


def test_missing_required_key_and_bad_yaml(tmp_path):
    with pytest.raises(SchemaError, match="missing required key 'labels'"):
        schema_from_dict({"tree": "t", "jets": []})
    bad = tmp_path / "bad.yaml"
    bad.write_text("tree: [unclosed\n")
    with pytest.raises(SchemaError, match="invalid YAML"):
        load_schema(bad)
    with pytest.raises(SchemaError, match="cannot read schema"):
        load_schema(tmp_path / "missing.yaml")


def test_round_trip_through_dict():
    schema = load_schema("cms_ak4")
    again = schema_from_dict(yaml.safe_load(yaml.safe_dump(schema.to_dict())))
    assert again == schema and again.hash == schema.hash


def described(column) -> tuple[str, str]:
    """(name, dtype) of an inferred column entry: a name (float32), or a mapping with its dtype."""
    return (column, "float32") if isinstance(column, str) else (column["name"], column.get("dtype", "float32"))


def test_infer_cms_ak4_sample(sample_files):
    data, skipped = infer_schema(sample_files, name="ak4")
    assert skipped == [] and data["name"] == "ak4"
    assert data["sort_by"] == ["label", "jet_pt"]
    assert data["tree"] == "Events"
    assert set(data["blocks"]) == {"pfcand", "sv"}
    expected = [(f.branch, f.dtype or "float32") for f in load_schema("cms_ak4").block("pfcand").features]
    assert [described(f) for f in data["blocks"]["pfcand"]["features"]] == expected  # int8 charge and id too
    assert data["labels"] == ["label_b", "label_bb", "label_c", "label_cc", "label_uds", "label_g", "label_undef"]
    assert "jet_pt" in data["jets"] and "label_b" not in data["jets"]
    schema_from_dict(data)


def test_infer_jetclass(jetclass_file):
    data, _ = infer_schema(jetclass_file)
    assert data["tree"] == "tree" and list(data["blocks"]) == ["part"]
    assert len(data["blocks"]["part"]["features"]) == 16
    assert len(data["labels"]) == 10 and ("jet_nparticles", "int8") in [described(c) for c in data["jets"]]


def test_infer_names_the_file_and_branch_where_files_disagree(sample_files, jetclass_file, tmp_path):
    import uproot

    with pytest.raises(SchemaError, match=r"jetclass_sample.root: tree 'tree' differs from 'Events'"):
        infer_schema([sample_files[0], jetclass_file])
    short = tmp_path / "short.root"
    with uproot.open(sample_files[0]) as handle:
        arrays = handle["Events"].arrays(filter_name=["jet_pt", "jet_eta", "label_*"], library="np")
    with uproot.recreate(short) as out:
        out.mktree("Events", {name: values.dtype for name, values in arrays.items()}).extend(arrays)
    with pytest.raises(SchemaError, match=r"short.root: has no branch 'event', which .*sample_cms_ak4_a.root has"):
        infer_schema([sample_files[0], str(short)])


@pytest.mark.slow
def test_cli_infer_then_convert_gives_sorted_shards(dask_client, sample_files, tmp_path):
    """An inferred schema sorts shards by (class, jet pT), as the sampler needs."""
    from jetstore.dataset.dataset import Dataset
    from tests.helpers import cli, run_convert

    result = cli("schema", "infer", *sample_files, "--name", "mine", "-o", str(tmp_path / "mine.yaml"))
    assert result.returncode == 0, result.stderr
    text = (tmp_path / "mine.yaml").read_text()
    assert "from sample_cms_ak4_a.root, sample_cms_ak4_b.root" in text and "name: mine" in text
    assert run_convert(dask_client, sample_files, tmp_path / "ds", schema=str(tmp_path / "mine.yaml")).ok
    table = Dataset.open(str(tmp_path / "ds")).read_shard(Dataset.open(str(tmp_path / "ds")).manifest.shards[0])
    labels = np.stack([table.jets[c] for c in load_schema(str(tmp_path / "mine.yaml")).label_names], axis=1)
    classes = labels.argmax(axis=1)
    assert (np.diff(classes) >= 0).all()
    for c in np.unique(classes):
        assert (np.diff(table.jets["jet_pt"][classes == c]) >= 0).all()
