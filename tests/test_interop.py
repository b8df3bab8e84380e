"""Standard readers open jetstore datasets as they are: pyarrow.dataset, dask and awkward on the Parquet
root, polars on its shards/ prefix, xarray on a Zarr shard; the manifest validates against the published
JSON Schema. (weaver-core on jetstore data: tests/test_weaver_interop.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import numpy as np
import pyarrow.parquet as pq
import pytest

from jetstore.store.dataset import Dataset
from tests.helpers import REPO, run_convert

LABELS = ["label_b", "label_bb", "label_c", "label_cc", "label_uds", "label_g", "label_undef"]


@pytest.fixture(scope="module")
def parquet_root(dask_client, sample_files, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("interop") / "ds.parquet"
    assert run_convert(dask_client, sample_files, root, "parquet", jets_per_shard=1000).ok
    return root


@pytest.fixture(scope="module")
def zarr_root(dask_client, sample_files, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("interop") / "ds.zarr"
    assert run_convert(dask_client, sample_files, root, jets_per_shard=1000).ok
    return root


def test_pyarrow_dataset_opens_the_root(parquet_root):
    import pyarrow.dataset as pads

    manifest = Dataset.open(str(parquet_root)).manifest
    dataset = pads.dataset(parquet_root, format="parquet")
    assert dataset.count_rows() == manifest.n_jets
    assert all(not field.nullable for field in dataset.schema)
    assert not dataset.schema.field("jet_pfcand_pt_log").type.value_field.nullable
    high = dataset.count_rows(filter=pads.field("jet_pt") > 100)
    pts = dataset.to_table(columns=["jet_pt"])["jet_pt"].to_numpy()
    assert high == int((pts > 100).sum()) > 0


def test_row_groups_carry_jet_statistics(parquet_root):
    shard = next((parquet_root / "shards").glob("*.parquet"))
    metadata = pq.ParquetFile(shard).metadata
    names = [metadata.schema.column(i).path for i in range(metadata.num_columns)]
    column = metadata.row_group(0).column(names.index("jet_pt"))
    table = pq.read_table(shard, columns=["jet_pt"]).column(0).to_numpy()[: metadata.row_group(0).num_rows]
    assert column.statistics.has_min_max
    assert column.statistics.min == pytest.approx(table.min()) and column.statistics.max == pytest.approx(table.max())


def test_polars_dask_and_awkward_read_the_root(parquet_root):
    import awkward as ak
    import dask.dataframe as dd
    import polars as pl

    n = Dataset.open(str(parquet_root)).manifest.n_jets
    # polars reads every file of a directory (it does not skip _-prefixed side files): the shards/ prefix
    assert pl.scan_parquet(parquet_root / "shards").select(pl.len()).collect().item() == n
    assert len(dd.read_parquet(str(parquet_root), columns=["jet_pt"])) == n
    array = ak.from_parquet(str(parquet_root), columns=["jet_pt", "jet_pfcand_pt_log"])
    assert len(array) == n
    assert str(ak.type(array.jet_pfcand_pt_log)).endswith("var * float32")  # required, not ?float32


def test_xarray_opens_a_zarr_shard(zarr_root):
    import xarray as xr
    import zarr

    dataset = Dataset.open(str(zarr_root))
    shard = dataset.manifest.shards[0]
    with zarr.storage.ZipStore(zarr_root / shard.path, mode="r") as store:
        jets = xr.open_zarr(store, group="jets", consolidated=False)
        assert jets["jet_pt"].dims == ("jet",) and jets.sizes["jet"] == shard.n_jets
        ours = dataset.read_shard(shard, ["jet_pt"], {"pfcand": ["jet_pfcand_pt_log"]})
        np.testing.assert_array_equal(jets["jet_pt"].values, ours.jets["jet_pt"])
        nodes = xr.open_zarr(store, group="pfcand", consolidated=False)
        assert nodes["jet_pfcand_pt_log"].dims == ("pfcand_node",) and nodes["counts"].dims == ("jet",)
        assert int(nodes["counts"].sum()) == shard.node_counts["pfcand"]
        root = zarr.open_group(store, mode="r")  # node values of unit k start at unit_offsets[k] (chunk-aligned)
        assert nodes.sizes["pfcand_node"] == root.attrs["unit_offsets"]["pfcand"][-1] >= shard.node_counts["pfcand"]


def test_manifest_validates_against_the_published_schema(parquet_root):
    schema = json.loads((REPO / "docs/manifest.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    manifest = json.loads((parquet_root / "_manifest.json").read_text())
    jsonschema.validate(manifest, schema)
    broken = {**manifest, "shards": [{**manifest["shards"][0], "n_jets": "many"}]}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)
