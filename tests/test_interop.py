"""Outside readers get the right jets from jetstore datasets, following docs/reading.md, each reader alone:
every column of every shard read with zarr-python (Zarr) and with pyarrow, polars and duckdb (Parquet) equals
uproot's reading of the ROOT input jet by jet; the recipes for zarr-python, xarray and awkward work on local disk
and S3 (moto); pyarrow.dataset, pandas, dask.dataframe, awkward and coffea read a Parquet root. The manifest
validates against the published JSON Schema. (weaver-core on jetstore data: tests/test_weaver_interop.py.)"""

from __future__ import annotations

import json
import warnings

import awkward as ak
import jsonschema
import numpy as np
import pyarrow.parquet as pq
import pytest

from jetstore.dataset.dataset import Dataset
from tests.conftest import reference_for
from tests.helpers import REPO

warnings.filterwarnings("ignore", message=".*not part in the Zarr format 3 specification.*")


@pytest.fixture(scope="module")
def s3_zarr(ak4_zarr, moto_server) -> tuple[str, dict]:
    """The Zarr dataset copied to a bucket of the moto server: its URL and storage options."""
    import s3fs

    moto_server.make_bucket("interop")
    s3fs.S3FileSystem(**moto_server.options).put(str(ak4_zarr), "interop/ak4.zarr", recursive=True)
    return "s3://interop/ak4.zarr", moto_server.options


def columns_of(dataset: Dataset) -> dict[str, str | None]:
    """Every stored column → its node block (None: a jet-level column)."""
    columns = dataset.manifest.columns
    return {**dict.fromkeys(columns.jet_names), **{f: b.name for b in columns.blocks for f in b.names}}


def assert_matches_root(read: dict, dataset: Dataset) -> None:
    """``read``: every stored column over all shards in manifest order (a jet column: its values; a node feature:
    (nodes per jet, values)), equal jet by jet to uproot's reading of the inputs."""
    reference = reference_for(dataset)
    branch = {c.name: c.branch for c in (*dataset.schema.jet_columns, *(f for b in dataset.schema.blocks
                                                                        for f in b.features))}
    assert set(read) == set(columns_of(dataset))
    for name, block in columns_of(dataset).items():
        expected = reference[branch.get(name, name)]
        if block is None:
            got = read[name]
            np.testing.assert_array_equal(got.astype(ak.to_numpy(expected).dtype), ak.to_numpy(expected), name)
        else:
            counts, values = read[name]
            np.testing.assert_array_equal(counts, ak.to_numpy(ak.num(expected, axis=1)), name)
            np.testing.assert_array_equal(values, ak.to_numpy(ak.flatten(expected)), name)


# ------------------------------------------------------------------------------------------------ Zarr


def zarr_recipe(url: str, options: dict | None, shard: int) -> tuple[np.ndarray, ak.Array]:
    """docs/reading.md's three lines for zarr-python and awkward: a shard's jet pT and its jets' pfcand pT."""
    import zarr

    root = zarr.open_group(url, mode="r", storage_options=options)
    group = zarr.open_group(f"zip::{url}/{root.attrs['shards'][shard]['path']}", mode="r",
                            storage_options=options and {"s3": options})
    starts, counts = group["pfcand/starts"][:], group["pfcand/counts"][:]
    nodes = ak.Array(ak.contents.ListArray(ak.index.Index64(starts), ak.index.Index64(starts + counts),
                                           ak.contents.NumpyArray(group["pfcand/jet_pfcand_pt_log"][:])))
    return group["jets/jet_pt"][:], nodes


def read_with_zarr(url: str, options: dict | None = None) -> dict:
    """Every column of every shard, with zarr-python and numpy alone (the root group lists the shards; a jet's
    nodes are values[starts:starts + counts])."""
    import zarr

    root = zarr.open_group(url, mode="r", storage_options=options)
    read: dict[str, list] = {}
    for shard in root.attrs["shards"]:
        group = zarr.open_group(f"zip::{url}/{shard['path']}", mode="r", storage_options=options and {"s3": options})
        assert group.attrs["n_jets"] == shard["n_jets"]
        for name, array in group["jets"].arrays():
            read.setdefault(name, []).append(array[:])
        for block in (name for name in group.group_keys() if name != "jets"):
            starts, counts = group[block]["starts"][:], group[block]["counts"][:]
            where = np.repeat(starts - np.cumsum(counts) + counts, counts) + np.arange(counts.sum())
            for name, array in group[block].arrays():
                if name not in ("starts", "counts"):
                    read.setdefault(name, []).append((counts, array[:][where]))
    return {name: np.concatenate(parts) if isinstance(parts[0], np.ndarray)
            else tuple(np.concatenate(p) for p in zip(*parts, strict=True)) for name, parts in read.items()}


def test_zarr_python_alone_reads_every_column_of_every_shard_right(ak4_zarr):
    import zarr

    dataset = Dataset.open(str(ak4_zarr))
    assert_matches_root(read_with_zarr(str(ak4_zarr)), dataset)
    shard = dataset.manifest.shards[0]  # the unit-aligned padding is there: values[:n] split by counts would be wrong
    group = zarr.open_group(zarr.storage.ZipStore(ak4_zarr / shard.path, mode="r"), mode="r")
    assert group["pfcand/jet_pfcand_pt_log"].shape[0] > shard.node_counts["pfcand"]


def test_the_root_group_lists_the_shards(ak4_zarr):
    import zarr

    root = zarr.open_group(str(ak4_zarr), mode="r")
    manifest = Dataset.open(str(ak4_zarr)).manifest
    assert root.attrs["shards"] == [{"path": s.path, "n_jets": s.n_jets} for s in manifest.shards]
    assert root.attrs["n_jets"] == manifest.n_jets and root.attrs["jetstore"]["version"] == manifest.version


def test_the_root_group_follows_the_manifest_and_never_a_stale_writer(ak4_zarr, tmp_path):
    """Installed as the manifest is: a newer generation's replaces it, an older one's (a writer that stalled past
    its lease) does not, and a dataset replaced by a Parquet one loses it."""
    import dataclasses
    import shutil

    import zarr

    from jetstore.dataset.writer import DatasetWriter

    copy = tmp_path / "ak4.zarr"
    shutil.copytree(ak4_zarr, copy)
    manifest, writer = Dataset.open(str(copy)).manifest, DatasetWriter(str(copy))
    newer = dataclasses.replace(manifest, generation=manifest.generation + 2, shards=manifest.shards[:1])
    writer._install_root_files(newer)
    assert len(zarr.open_group(str(copy), mode="r").attrs["shards"]) == 1
    writer._install_root_files(manifest)
    assert len(zarr.open_group(str(copy), mode="r").attrs["shards"]) == 1
    writer._install_root_files(dataclasses.replace(manifest, format="parquet", generation=manifest.generation + 3))
    assert not (copy / "zarr.json").exists()


@pytest.mark.slow
def test_zarr_recipes_on_local_disk_and_s3(ak4_zarr, s3_zarr):
    import xarray as xr

    dataset = Dataset.open(str(ak4_zarr))
    ours = dataset.read_shard(dataset.manifest.shards[1], ["jet_pt"], {"pfcand": ["jet_pfcand_pt_log"]})
    for url, options in ((str(ak4_zarr), None), s3_zarr):
        pt, nodes = zarr_recipe(url, options, shard=1)
        np.testing.assert_array_equal(pt, ours.jets["jet_pt"])
        np.testing.assert_array_equal(ak.to_numpy(ak.num(nodes)), ours.blocks["pfcand"].counts)
        np.testing.assert_array_equal(ak.to_numpy(ak.flatten(nodes)),
                                      ours.blocks["pfcand"].features["jet_pfcand_pt_log"])
        shard = f"zip::{url}/{dataset.manifest.shards[1].path}"
        xarray_options = options and {"s3": options}
        jets = xr.open_zarr(shard, group="jets", storage_options=xarray_options)
        nodes = xr.open_zarr(shard, group="pfcand", storage_options=xarray_options)
        assert jets["jet_pt"].dims == ("jet",) and nodes["jet_pfcand_pt_log"].dims == ("pfcand_node",)
        k = len(pt) - 1  # the shard's last jet: in its last unit, after the padding of the others
        start, count = int(nodes["starts"][k]), int(nodes["counts"][k])
        offset = int(np.sum(ours.blocks["pfcand"].counts[:k]))
        np.testing.assert_array_equal(nodes["jet_pfcand_pt_log"][start:start + count].values,
                                      ours.blocks["pfcand"].features["jet_pfcand_pt_log"][offset:offset + count])
        np.testing.assert_array_equal(jets["jet_pt"].values, ours.jets["jet_pt"])


# ------------------------------------------------------------------------------------------------ Parquet


def from_arrow(table, dataset: Dataset) -> dict:
    """Every stored column of an Arrow table (a node feature as counts and values)."""
    read = {}
    for name, block in columns_of(dataset).items():
        column = table.column(name).combine_chunks()
        if block is None:
            read[name] = column.to_numpy()
        else:
            read[name] = (np.diff(column.offsets.to_numpy()), column.flatten().to_numpy())
    return read


def test_pyarrow_alone_reads_every_column_of_every_shard_right(ak4_parquet):
    import pyarrow as pa

    dataset = Dataset.open(str(ak4_parquet))
    tables = [pq.read_table(ak4_parquet / shard.path) for shard in dataset.manifest.shards]
    assert_matches_root(from_arrow(pa.concat_tables(tables), dataset), dataset)


def test_polars_alone_reads_every_column_of_every_shard_right(ak4_parquet):
    import polars as pl

    dataset = Dataset.open(str(ak4_parquet))
    frame = pl.read_parquet(f"{ak4_parquet}/shards/*.parquet")  # the documented glob: shards in name order
    assert frame.height == dataset.manifest.n_jets
    read = {}
    for name, block in columns_of(dataset).items():
        series = frame[name]
        read[name] = series.to_numpy() if block is None else \
            (series.list.len().to_numpy(), series.explode().drop_nulls().to_numpy())
    assert_matches_root(read, dataset)


def test_duckdb_alone_reads_every_column_of_every_shard_right(ak4_parquet):
    import duckdb

    dataset = Dataset.open(str(ak4_parquet))
    table = duckdb.sql(f"SELECT * EXCLUDE (filename, file_row_number) FROM read_parquet('{ak4_parquet}/shards/"
                       "*.parquet', filename = true, file_row_number = true) ORDER BY filename, file_row_number")
    assert_matches_root(from_arrow(table.to_arrow_table(), dataset), dataset)


def test_the_ak4_parquet_opens_in_dataframe_and_array_libraries(ak4_parquet):
    import dask.dataframe as dd
    import pandas as pd
    import pyarrow.dataset as pads

    dataset = Dataset.open(str(ak4_parquet))
    reference = reference_for(dataset)
    pt = ak.to_numpy(reference["jet_pt"])
    counts = ak.to_numpy(ak.num(reference["jet_pfcand_pt_log"]))
    arrow = pads.dataset(ak4_parquet, format="parquet")  # jetstore's side files start with _: skipped
    assert all(not field.nullable for field in arrow.schema)
    np.testing.assert_array_equal(arrow.to_table(columns=["jet_pt"])["jet_pt"].to_numpy(), pt)
    assert arrow.count_rows(filter=pads.field("jet_pt") > 100) == int((pt > 100).sum()) > 0
    np.testing.assert_array_equal(pd.read_parquet(ak4_parquet, columns=["jet_pt"])["jet_pt"].to_numpy(), pt)
    np.testing.assert_array_equal(dd.read_parquet(str(ak4_parquet), columns=["jet_pt"])["jet_pt"].compute()
                                  .to_numpy(), pt)
    array = ak.from_parquet(str(ak4_parquet), columns=["jet_pt", "jet_pfcand_pt_log"])
    assert str(ak.type(array.jet_pfcand_pt_log)).endswith("var * float32")  # required, not ?float32
    np.testing.assert_array_equal(ak.to_numpy(ak.num(array.jet_pfcand_pt_log)), counts)


def test_coffea_runs_a_processor_over_the_shards(ak4_parquet):
    """coffea's documented Parquet path: a Runner over a fileset of the shards (its NanoEvents factory)."""
    coffea_processor = pytest.importorskip("coffea.processor")
    from coffea.nanoevents import BaseSchema

    class JetSums(coffea_processor.ProcessorABC):
        def process(self, events):
            return {"jets": len(events), "pt": float(ak.sum(events.jet_pt)),
                    "nodes": int(ak.sum(ak.num(events.jet_pfcand_pt_log)))}

        def postprocess(self, accumulator):
            return accumulator

    dataset = Dataset.open(str(ak4_parquet))
    fileset = {"ak4": {"files": {str(ak4_parquet / shard.path): None for shard in dataset.manifest.shards}}}
    runner = coffea_processor.Runner(executor=coffea_processor.IterativeExecutor(), schema=BaseSchema,
                                     format="parquet", chunksize=500)
    out = runner(fileset, processor_instance=JetSums())
    reference = reference_for(dataset)
    assert out["jets"] == len(reference) == dataset.manifest.n_jets
    assert out["pt"] == pytest.approx(float(ak.sum(reference["jet_pt"])), rel=1e-6)
    assert out["nodes"] == dataset.manifest.node_counts["pfcand"]


def test_row_groups_carry_jet_statistics(ak4_parquet):
    shard = next((ak4_parquet / "shards").glob("*.parquet"))
    metadata = pq.ParquetFile(shard).metadata
    names = [metadata.schema.column(i).path for i in range(metadata.num_columns)]
    column = metadata.row_group(0).column(names.index("jet_pt"))
    table = pq.read_table(shard, columns=["jet_pt"]).column(0).to_numpy()[: metadata.row_group(0).num_rows]
    assert column.statistics.has_min_max
    assert column.statistics.min == pytest.approx(table.min()) and column.statistics.max == pytest.approx(table.max())


def test_shards_are_named_after_the_dataset_and_their_number(ak4_parquet, ak4_zarr):
    from jetstore.model import paths

    for root, suffix in ((ak4_parquet, ".parquet"), (ak4_zarr, ".zarr.zip")):
        shards = Dataset.open(str(root)).manifest.shards
        assert [s.path.split("/")[1].split(".")[:2] for s in shards] == [["ak4", f"{i:05d}"] for i in range(3)]
        assert all(s.path.endswith(suffix) for s in shards)
        assert all(paths.owned(s.path) == (s.name, 1) for s in shards)
    # names of earlier versions (after the first input and its first entry) stay jetstore's to clean up
    assert paths.owned("shards/jc_hbb.0000100000.1a2b3c4d.g3.zarr.zip") == ("jc_hbb.0000100000.1a2b3c4d", 3)
    assert paths.dataset_name("s3://bucket/my+jets.v2.zarr/") == "my_jets" and paths.dataset_name("/") == "dataset"


def test_manifest_validates_against_the_published_schema(ak4_parquet):
    schema = json.loads((REPO / "docs/manifest.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    manifest = json.loads((ak4_parquet / "_manifest.json").read_text())
    jsonschema.validate(manifest, schema)
    broken = {**manifest, "shards": [{**manifest["shards"][0], "n_jets": "many"}]}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)
