"""``jetstore.open``: a dataset's jets as awkward, numpy and pandas arrays, uproot's way (entry ranges, steps,
several datasets with ``_sample_``, S3), and as a dask-awkward collection; every value against uproot's reading
of the ROOT inputs."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pytest

import jetstore
from jetstore.arrays.columns import SAMPLE, resolve
from jetstore.errors import DatasetError, JetstoreError
from jetstore.store.dataset import Dataset
from jetstore.store.layout import TableColumns
from tests.conftest import reference_for

COLUMNS = ["jet_pt", "label_b", "_entry", "jet_pfcand_pt_log", "jet_pfcand_charge", "jet_sv_mass", "_sample_"]


@pytest.fixture(scope="module")
def reference(ak4_zarr) -> ak.Array:
    return reference_for(Dataset.open(str(ak4_zarr)))


def assert_same_jets(got: ak.Array, expected: ak.Array, columns=COLUMNS) -> None:
    """``columns`` of ``got`` (``_sample_`` aside) equal uproot's reading jet by jet."""
    assert len(got) == len(expected)
    for name in columns:
        if name == SAMPLE:
            continue
        want = expected[name]
        if want.ndim == 1:
            np.testing.assert_array_equal(ak.to_numpy(got[name]).astype(ak.to_numpy(want).dtype), ak.to_numpy(want))
        else:
            np.testing.assert_array_equal(ak.to_numpy(ak.num(got[name])), ak.to_numpy(ak.num(want)))
            np.testing.assert_array_equal(ak.to_numpy(ak.flatten(got[name])),
                                          ak.to_numpy(ak.flatten(want)).astype(str(ak.type(got[name]).content
                                                                                   .content)))


@pytest.mark.parametrize("fmt", ["zarr", "parquet"])
def test_every_column_of_every_jet(ak4_zarr, ak4_parquet, reference, fmt):
    jets = jetstore.open(str(ak4_zarr if fmt == "zarr" else ak4_parquet))
    assert jets.num_entries == len(jets) == len(reference) and jets.samples == ("ak4",)
    everything = jets.arrays()
    assert everything.fields == list(jets.keys()) and jets.keys()[-1] == SAMPLE
    assert_same_jets(everything, reference, everything.fields)
    assert str(ak.type(everything.jet_pfcand_charge)).endswith("var * int8")
    assert ak.all(everything[SAMPLE] == 0)


@pytest.mark.parametrize(("start", "stop"), [(0, 10), (800, 900), (830, 1300), (-300, None), (None, -2000),
                                             (2000, 5000), (700, 600)])
def test_entry_ranges_as_uproot(ak4_zarr, reference, start, stop):
    """Ranges within a unit, across units and shards, from the end, past the end, empty: as Python slices."""
    got = jetstore.open(str(ak4_zarr)).arrays(COLUMNS, entry_start=start, entry_stop=stop)
    assert got.fields == COLUMNS
    assert_same_jets(got, reference[start:stop])


def test_node_columns_alone(ak4_zarr, reference):
    got = jetstore.open(str(ak4_zarr)).arrays("jet_pfcand_pt_log", entry_start=800)
    assert got.fields == ["jet_pfcand_pt_log"]
    assert_same_jets(got, reference[800:], ["jet_pfcand_pt_log"])


def test_numpy_and_pandas(ak4_zarr, reference):
    jets = jetstore.open(str(ak4_zarr))
    arrays = jets.arrays(["jet_pt", "jet_pfcand_pt_log"], 830, 845, library="np")
    np.testing.assert_array_equal(arrays["jet_pt"], ak.to_numpy(reference["jet_pt"][830:845]))
    assert arrays["jet_pfcand_pt_log"].dtype == object and len(arrays["jet_pfcand_pt_log"]) == 15
    for got, want in zip(arrays["jet_pfcand_pt_log"], reference["jet_pfcand_pt_log"][830:845], strict=True):
        np.testing.assert_array_equal(got, ak.to_numpy(want))
    frame = jets.arrays(["jet_pt", "jet_pfcand_pt_log", "_sample_"], 830, 845, library="pd")
    assert list(frame.columns) == ["jet_pt", "jet_pfcand_pt_log", "_sample_"] and len(frame) == 15
    np.testing.assert_array_equal(frame["jet_pt"].to_numpy(), ak.to_numpy(reference["jet_pt"][830:845]))
    assert list(frame["jet_pfcand_pt_log"].iloc[3]) == reference["jet_pfcand_pt_log"][833].tolist()
    for library in ("np", "pd"):  # nothing in range: empty columns of their types
        empty = jets.arrays(["jet_pt", "jet_pfcand_pt_log"], 700, 600, library=library)
        assert len(empty["jet_pt"]) == len(empty["jet_pfcand_pt_log"]) == 0


def test_iterate_in_steps_across_shards(ak4_zarr, reference):
    jets = jetstore.open(str(ak4_zarr))
    steps = list(jets.iterate(["jet_pt", "jet_sv_mass"], step_size=700, entry_start=100))
    assert [len(step) for step in steps] == [700, 700, len(reference) - 1500]
    assert_same_jets(ak.concatenate(steps), reference[100:], ["jet_pt", "jet_sv_mass"])
    assert [len(step["jet_pt"]) for step in jets.iterate("jet_pt", step_size=1000, library="np")] == [1000, 1000, 91]
    with pytest.raises(JetstoreError, match="step_size must be a positive number of jets"):
        next(jets.iterate("jet_pt", step_size=0))


def test_several_datasets_one_after_the_other(ak4_zarr, ak4_parquet, reference):
    jets = jetstore.open({"z": str(ak4_zarr), "p": str(ak4_parquet)})
    assert jets.samples == ("z", "p") and jets.num_entries == 2 * len(reference)
    got = jets.arrays(["jet_pt", "jet_pfcand_pt_log", "_sample_"], entry_start=len(reference) - 5,
                      entry_stop=len(reference) + 5)
    np.testing.assert_array_equal(ak.to_numpy(got[SAMPLE]), [0] * 5 + [1] * 5)
    assert_same_jets(got, ak.concatenate([reference[-5:], reference[:5]]), ["jet_pt", "jet_pfcand_pt_log"])


def test_s3(ak4_zarr, reference, moto_server):
    import s3fs

    moto_server.make_bucket("open")
    s3fs.S3FileSystem(**moto_server.options).put(str(ak4_zarr), "open/ak4.zarr", recursive=True)
    got = jetstore.open("s3://open/ak4.zarr", moto_server.options).arrays(COLUMNS)
    assert_same_jets(got, reference)


def test_unknown_columns_and_libraries_are_one_line_errors(ak4_zarr):
    jets = jetstore.open(str(ak4_zarr))
    with pytest.raises(DatasetError, match=r"no column 'jet_ptt'; did you mean 'jet_pt'"):
        jets.arrays(["jet_ptt"])
    with pytest.raises(JetstoreError, match="library must be one of 'ak', 'np', 'pd', not 'torch'"):
        jets.arrays("jet_pt", library="torch")
    one = TableColumns.build(["jet_pt"], {"pfcand": ["x"]}, {"jet_pt": "float32", "x": "float32"})
    other = TableColumns.build(["jet_pt"], {"pfcand": ["x"]}, {"jet_pt": "float64", "x": "float32"})
    with pytest.raises(DatasetError, match="column 'jet_pt' is float64 per jet here but float32 per jet in a"):
        resolve(["x", "jet_pt"], [("a", one), ("b", other)])


def test_a_dask_awkward_collection_partitioned_by_units(ak4_zarr, reference):
    dask = pytest.importorskip("dask")
    dak = pytest.importorskip("dask_awkward")
    jets = jetstore.open(str(ak4_zarr))
    collection = jets.dask(["jet_pt", "jet_pfcand_pt_log", "_sample_"], step_size=500)
    shards = [s.n_jets for s in Dataset.open(str(ak4_zarr)).manifest.shards]  # 839, 425, 827: units of 256
    assert collection.divisions == (0, 512, 839, 1264, 1776, 2091) and shards == [839, 425, 827]
    # dask-awkward (<= 2026.2) needs dask < 2025.4 for its column optimisation; without it every column is read
    with dask.config.set({"awkward.optimization.enabled": False}, scheduler="sync"):
        assert_same_jets(collection.compute(), reference, ["jet_pt", "jet_pfcand_pt_log"])
        assert float(dak.sum(collection.jet_pt).compute()) == pytest.approx(float(ak.sum(reference["jet_pt"])))
    reader = collection.dask.layers[collection.name].io_func  # the column projection coffea's optimiser calls
    projected = reader.project_columns(frozenset({"jet_pt"}))
    part = projected(jets.entries.partitions(500)[1])
    assert part.fields == ["jet_pt"] and len(part) == 839 - 512
