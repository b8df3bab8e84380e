"""CMS NanoAOD / PFNano inputs (per-event collections and link tables) against an independent per-event,
per-jet Python computation from the same branches: jets, their particles (values and order), labels."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pytest
import uproot
import yaml

from jetstore.conversion.infer import infer_schema
from jetstore.dataset.dataset import Dataset
from jetstore.schema import load_schema
from tests.conftest import SHARED
from tests.helpers import REPO, nano_collections, run_convert

NANO = SHARED / "data" / "cms_nano"
PFNANO, NANO_V15 = NANO / "pfnano.root", NANO / "nano_tt_v15.root"
pytestmark = pytest.mark.shared


@pytest.fixture(scope="module", autouse=True)
def _shared():
    if not PFNANO.exists() or not NANO_V15.exists():
        pytest.skip("../shared/data/cms_nano is not present")


def wrap(x):
    return (x + np.pi) % (2 * np.pi) - np.pi


def stored_jets(dataset):
    """Stored jets by (event, jet index), each with its blocks' feature lists."""
    table = dataset.read_all()
    offsets = {name: np.concatenate([[0], np.cumsum(block.counts)]) for name, block in table.blocks.items()}
    jets = {}
    for row, (event, ijet) in enumerate(zip(table.jets["event"], table.jets["ijet"], strict=True)):
        jets[int(event), int(ijet)] = (
            {k: v[row] for k, v in table.jets.items()},
            {name: {f: block.features[f][offsets[name][row]:offsets[name][row + 1]] for f in block.features}
             for name, block in table.blocks.items()})
    return jets


def linked(events, e, table, jet, node, nodes, j, order="pt"):
    """Independent: the rows of ``nodes`` linked to jet ``j`` of event ``e`` (link order kept), then sorted by
    descending pT; also the link rows in that order."""
    rows = [(int(n), k) for k, (jj, n) in enumerate(zip(events[f"{table}_{jet}"][e], events[f"{table}_{node}"][e],
                                                          strict=True)) if jj == j and n >= 0 and jj >= 0]
    rows.sort(key=lambda r: -float(events[f"{nodes}_{order}"][e][r[0]]))
    return [r[0] for r in rows], [r[1] for r in rows]


@pytest.mark.slow
def test_pfnano_ak4_jets_particles_and_labels(dask_client, tmp_path):
    report = run_convert(dask_client, [PFNANO], tmp_path / "ak4.zarr", schema="nano_ak4")
    assert report.ok, report.failures
    dataset = Dataset.open(str(tmp_path / "ak4.zarr"))
    events = uproot.open(PFNANO)["Events"].arrays(library="ak")
    jets = stored_jets(dataset)
    assert len(jets) == dataset.manifest.n_jets == int(ak.sum(events["nJet"])) == 64
    checked_links = 0
    for e in range(len(events)):
        for j in range(int(events["nJet"][e])):
            columns, blocks = jets[int(events["event"][e]), j]
            assert columns["jet_pt"] == np.float32(events["Jet_pt"][e][j])
            hflav, pflav = int(events["Jet_hadronFlavour"][e][j]), int(events["Jet_partonFlavour"][e][j])
            nb, nc = int(events["Jet_nBHadrons"][e][j]), int(events["Jet_nCHadrons"][e][j])
            label = ("b" if nb < 2 else "bb") if hflav == 5 else ("c" if nc < 2 else "cc") if hflav == 4 else \
                "g" if pflav == 21 else "uds" if 1 <= abs(pflav) <= 5 else "undef"
            assert [k for k in columns if k.startswith("label_") and columns[k] == 1] == [f"label_{label}"]
            cands, links = linked(events, e, "JetPFCands", "jetIdx", "pFCandsIdx", "PFCands", j)
            pf = blocks["pfcand"]
            assert columns["jet_ncand"] == len(cands) == len(pf["jet_pfcand_pt_log"])
            pt = np.array([events["PFCands_pt"][e][c] for c in cands], np.float32)
            np.testing.assert_allclose(pf["jet_pfcand_pt_log"], np.log(pt), rtol=1e-6)
            assert (np.diff(pf["jet_pfcand_pt_log"]) <= 0).all()  # pT descending
            eta = np.array([events["PFCands_eta"][e][c] for c in cands], np.float32)
            phi = np.array([events["PFCands_phi"][e][c] for c in cands], np.float32)
            np.testing.assert_allclose(pf["jet_pfcand_deta"], eta - np.float32(events["Jet_eta"][e][j]), atol=1e-6)
            dphi = wrap(phi.astype(np.float64) - float(events["Jet_phi"][e][j]))
            np.testing.assert_allclose(pf["jet_pfcand_dphi"], dphi, atol=1e-5)
            assert np.abs(pf["jet_pfcand_dphi"]).max(initial=0) <= np.pi + 1e-6
            np.testing.assert_array_equal(pf["jet_pfcand_charge"], [events["PFCands_charge"][e][c] for c in cands])
            np.testing.assert_array_equal(pf["jet_pfcand_btagSip3dVal"],  # a per-link feature, in node order
                                          np.array([events["JetPFCands_btagSip3dVal"][e][k] for k in links],
                                                   np.float32))
            svs, _ = linked(events, e, "JetSVs", "jetIdx", "sVIdx", "SV", j)
            np.testing.assert_array_equal(blocks["sv"]["jet_sv_mass"],
                                          np.array([events["SV_mass"][e][s] for s in svs], np.float32))
            checked_links += len(cands) + len(svs)
    assert checked_links == sum(dataset.manifest.node_counts.values()) > 1000
    again = run_convert(dask_client, [PFNANO], tmp_path / "ak4.zarr", schema="nano_ak4")
    assert (again.written, again.reused) == (0, 1)  # a rerun resumes: the committed shard verifies and is kept

    # the cms_ak4 weaver data-config reads it as it is (without its class weights: these 10 events hold no b jet,
    # and a class without jets cannot be weighted, here as in weaver-core)
    from jetstore import JetDataset, compute_stats
    from jetstore.config.weaver import training_config_from_dict
    from jetstore.stats.result import write_stats

    options = yaml.safe_load((REPO / "tests/fixtures/weaver_cms_ak4.yaml").read_text())
    options.pop("weights", None)
    config = training_config_from_dict(options)
    write_stats(dataset, compute_stats(dataset, config, dask_client, log=lambda _: None))
    batches = list(JetDataset(dataset.url, config, batch_size=16, training=False))
    assert sum(len(b["_label_"]) for b in batches) == sum(
        1 for columns, _ in jets.values() if columns["jet_pt"] > 20 and abs(columns["jet_eta"]) < 2.5
        and columns["label_undef"] == 0)
    assert tuple(batches[0]["pf_features"].shape) == (16, 10, 64)
    assert tuple(batches[0]["sv_features"].shape) == (16, 7, 5)


@pytest.mark.slow
def test_nanoaod_v15_fatjets_with_events_without_jets(dask_client, tmp_path):
    report = run_convert(dask_client, [NANO_V15], tmp_path / "ak8.parquet", "parquet", schema="nano_ak8")
    assert report.ok, report.failures
    dataset = Dataset.open(str(tmp_path / "ak8.parquet"))
    events = uproot.open(NANO_V15)["Events"].arrays(
        ["event", "nFatJet", "FatJet_pt", "FatJet_hadronFlavour", "FatJetPFCand_jetIdx", "FatJetPFCand_pfCandIdx",
         "PFCand_pt", "PFCand_pdgId"], library="ak")
    assert ak.sum(events["nFatJet"] == 0) > 100  # most events have no AK8 jet
    jets = stored_jets(dataset)
    assert len(jets) == int(ak.sum(events["nFatJet"])) == dataset.manifest.n_jets
    for e in np.flatnonzero(ak.to_numpy(events["nFatJet"]) > 0):
        for j in range(int(events["nFatJet"][e])):
            columns, blocks = jets[int(events["event"][e]), j]
            flavour = {5: "label_b", 4: "label_c", 0: "label_light"}[int(events["FatJet_hadronFlavour"][e][j])]
            assert columns[flavour] == 1 and sum(columns[k] for k in ("label_b", "label_c", "label_light")) == 1
            cands, _ = linked(events, e, "FatJetPFCand", "jetIdx", "pfCandIdx", "PFCand", j)
            pt = np.array([events["PFCand_pt"][e][c] for c in cands], np.float32)
            np.testing.assert_allclose(blocks["pfcand"]["jet_pfcand_pt_log"], np.log(pt), rtol=1e-6)
            pdg = np.array([events["PFCand_pdgId"][e][c] for c in cands])
            lepton = np.isin(np.abs(pdg), (11, 13))
            charge = np.where(np.abs(pdg) == 211, np.sign(pdg), np.where(lepton, -np.sign(pdg), 0))
            np.testing.assert_array_equal(blocks["pfcand"]["jet_pfcand_charge"], charge)


@pytest.mark.slow
def test_per_jet_index_pairs_link_muons(dask_client, tmp_path):
    """``Jet_muonIdx1/2`` (-1: none) on the v15 AK4 jets, a schema written for the test; v15's ``Jet_svIdx1/2``
    point into the vertex collection before NanoAOD's SV selection (past ``nSV`` for 153 of 579 links in this
    file), so the same schema on them is refused, naming the event and branch."""
    def schema(collection, indices):
        return {"name": "v15_idx", "tree": "Events", "collection": "Jet",
                "jets": [{"name": "event", "dtype": "int64"}, {"name": "ijet", "expr": "jet_index", "dtype": "int16"},
                         {"name": "jet_pt", "branch": "Jet_pt"}],
                "labels": [], "blocks": {"nodes": {"link": {"collection": collection, "indices": indices},
                                                   "features": [{"name": "node_pt", "branch": f"{collection}_pt"},
                                                                {"name": "node_dphi",
                                                                 "expr": f"{collection}_phi - Jet_phi"}]}}}

    path = tmp_path / "muons.yaml"
    path.write_text(yaml.safe_dump(schema("Muon", ["Jet_muonIdx1", "Jet_muonIdx2"])))
    assert run_convert(dask_client, [NANO_V15], tmp_path / "mu.zarr", schema=str(path)).ok
    events = uproot.open(NANO_V15)["Events"].arrays(["event", "nJet", "Jet_muonIdx1", "Jet_muonIdx2", "Muon_pt"],
                                                    library="ak")
    jets = stored_jets(Dataset.open(str(tmp_path / "mu.zarr")))
    assert len(jets) == int(ak.sum(events["nJet"])) == 1636
    with_muon = 0
    for e in range(len(events)):
        for j in range(int(events["nJet"][e])):
            indices = [int(events[f"Jet_muonIdx{k}"][e][j]) for k in (1, 2)]
            muons = sorted((i for i in indices if i >= 0), key=lambda i: -float(events["Muon_pt"][e][i]))
            _, blocks = jets[int(events["event"][e]), j]
            np.testing.assert_array_equal(blocks["nodes"]["node_pt"], [events["Muon_pt"][e][i] for i in muons])
            with_muon += bool(muons)
    assert with_muon == 83

    path.write_text(yaml.safe_dump(schema("SV", ["Jet_svIdx1", "Jet_svIdx2"])))
    report = run_convert(dask_client, [NANO_V15], tmp_path / "sv.zarr", schema=str(path))
    assert report.failures == {str(NANO_V15): "event 0: Jet_svIdx1 = 10 points outside the SV collection "
                                              "(10 entries in that event)"}


@pytest.mark.slow
def test_a_jet_selection_keeps_the_selected_jets_with_their_particles(dask_client, tmp_path):
    data = load_schema("nano_ak4").to_dict()
    data["selection"] = "(Jet_pt > 30) & (np.abs(Jet_eta) < 2.4)"
    path = tmp_path / "selected.yaml"
    path.write_text(yaml.safe_dump(data))
    assert run_convert(dask_client, [PFNANO], tmp_path / "sel.zarr", schema=str(path)).ok
    events = uproot.open(PFNANO)["Events"].arrays(["event", "Jet_pt", "Jet_eta", "JetPFCands_jetIdx"], library="ak")
    selected = (events["Jet_pt"] > 30) & (np.abs(events["Jet_eta"]) < 2.4)
    expected = {(int(events["event"][e]), j) for e in range(len(events))
                for j in np.flatnonzero(ak.to_numpy(selected[e]))}
    jets = stored_jets(Dataset.open(str(tmp_path / "sel.zarr")))
    assert set(jets) == expected and 0 < len(expected) < int(ak.sum(ak.num(events["Jet_pt"])))
    for (event, j), (_, blocks) in jets.items():  # the jet keeps all its linked particles
        e = int(np.flatnonzero(ak.to_numpy(events["event"]) == event)[0])
        assert len(blocks["pfcand"]["jet_pfcand_pt_log"]) == int(ak.sum(events["JetPFCands_jetIdx"][e] == j))


def test_a_link_past_the_collection_names_file_event_and_branch(dask_client, tmp_path):
    schema = load_schema("nano_ak4")
    branches = uproot.open(PFNANO)["Events"].arrays(sorted(schema.branches), library="ak")
    flat, collections = nano_collections(branches)
    links = collections["JetPFCands"]
    index = ak.to_list(links["pFCandsIdx"])
    index[3][5] = int(branches["nPFCands"][3]) + 7  # event 3 points past its PF candidates
    links["pFCandsIdx"] = ak.values_astype(ak.Array(index), np.int32)
    broken = tmp_path / "broken.root"
    data = {**flat, **{prefix: ak.zip(fields) for prefix, fields in collections.items()}}
    with uproot.recreate(broken) as out:  # a TTree as NanoAOD writes it: nX counters, X_field branches
        out.mktree("Events", {name: array.type for name, array in data.items()}).extend(data)
    report = run_convert(dask_client, [broken], tmp_path / "bad.zarr", schema="nano_ak4")
    assert not report.ok
    reason = report.failures[str(broken)]
    assert "event 3" in reason and "JetPFCands_pFCandsIdx" in reason and "PFCands collection" in reason


@pytest.mark.slow
def test_schema_infer_recognises_nanoaod(tmp_path):
    ak4, skipped = infer_schema([str(PFNANO)])
    assert ak4["name"] == "nano_ak4" and ak4["collection"] == "Jet" and not skipped
    assert infer_schema([str(NANO_V15)], name="mine")[0]["name"] == "mine"
    from jetstore.conversion import infer_nano
    from jetstore.conversion.inputs import root
    from jetstore.schema.load import schema_from_dict

    tree = uproot.open(PFNANO)["Events"]
    with root.KIND.open(str(PFNANO), "Events", {}) as handle:
        generic = schema_from_dict(infer_nano._generic(handle.branches(), "Events", set(tree.keys(recursive=False)),
                                                       None))
    assert generic.collection == "Jet" and {b.name for b in generic.blocks} == {"pfcands", "sv"}
    assert generic.branches <= set(tree.keys(recursive=False))


def test_bad_per_event_schemas_are_refused():
    from jetstore.errors import SchemaError
    from jetstore.schema.load import schema_from_dict

    base = {"tree": "Events", "collection": "Jet", "jets": ["Jet_pt"], "labels": []}
    with pytest.raises(SchemaError, match="needs a 'link'"):
        schema_from_dict({**base, "blocks": {"pf": {"features": ["PFCands_pt"]}}})
    with pytest.raises(SchemaError, match="either a link table"):
        schema_from_dict({**base, "blocks": {"pf": {"link": {"collection": "PFCands", "jet": "X_jetIdx"},
                                                    "features": ["PFCands_pt"]}}})
    def block(feature):
        return {"link": {"collection": "PFCands", "indices": ["Jet_a"]}, "features": [feature]}

    with pytest.raises(SchemaError, match="both read 'PFCands'"):
        schema_from_dict({**base, "blocks": {"a": block("PFCands_pt"), "b": block("PFCands_eta")}})
