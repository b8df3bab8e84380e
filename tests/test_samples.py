"""Several datasets, one training (weaver's named ``--data-train`` groups): each physics sample converted on its own
(one on local disk, one on the moto S3 server), statistics over their union equal weaver-core's on all the files
as one list, a mixed stream follows the (class, pT, eta) target with and without DataLoader workers, every jet
knows its sample, and per-sample proportions replace the natural shares."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import weaver.utils.data.preprocess as weaver_preprocess

from jetstore import JetDataset, load_schema
from jetstore.cli import main
from jetstore.config import load_training_config
from jetstore.dataset.collection import Collection, parse_sample
from jetstore.errors import DatasetError, SchemaError
from jetstore.schema import schema_from_dict
from jetstore.stats.result import read_stats, write_stats
from jetstore.stats.run import compute_stats
from tests.fixtures.mixing import histogram, variation
from tests.helpers import REPO, run_convert
from tests.test_stats import assert_same_as_weaver, weaver_reference

CONFIG = REPO / "tests" / "fixtures" / "weaver_cms_ak4.yaml"


@pytest.fixture(autouse=True)
def _no_weaver_sleep(monkeypatch):
    monkeypatch.setattr(weaver_preprocess.time, "sleep", lambda _: None)


@pytest.fixture(scope="module")
def two_samples(dask_client, sample_files, moto_server, tmp_path_factory):
    """The two bundled files as two samples converted separately, without a convert-time skim (so weaver sees
    the same jets): ``ttbar`` on local disk, ``qcd`` in a moto bucket."""
    data = load_schema("cms_ak4").to_dict()
    data.pop("selection")
    schema = schema_from_dict(data)
    local = tmp_path_factory.mktemp("samples") / "ttbar.zarr"
    assert run_convert(dask_client, sample_files[:1], local, schema=schema).ok
    moto_server.make_bucket("samples")
    remote = "s3://samples/qcd.zarr"
    assert run_convert(dask_client, sample_files[1:], remote, schema=schema, options=moto_server.options).ok
    data = {"ttbar": str(local), "qcd": remote}
    collection = Collection.open(data, moto_server.options)
    config = load_training_config(CONFIG)
    write_stats(collection, compute_stats(collection, config, dask_client, log=lambda _: None))
    return data, collection, config


def test_the_union_s_statistics_are_weaver_s_on_all_the_files(dask_client, two_samples, sample_files):
    _, collection, config = two_samples
    result = read_stats(collection, config.hash)
    assert_same_as_weaver(result, *weaver_reference(sample_files, config.options))
    assert result.jets_read == collection.n_jets
    # each dataset alone has no stats for this config: the union's are its own
    for member in collection:
        with pytest.raises(DatasetError, match="run `jetstore stats` first"):
            read_stats(member.dataset, config.hash)
    # the same union in another order, or given as a list of NAME:URL, finds the same stats
    again = Collection.open([f"qcd:{collection.members[1].url}", f"ttbar:{collection.members[0].url}"],
                            collection.members[1].dataset.options)
    assert read_stats(again, config.hash).variables == result.variables


def test_sample_arguments_parse_like_weaver_groups():
    assert parse_sample("ttbar:/data/ttbar.zarr") == ("ttbar", "/data/ttbar.zarr")
    assert parse_sample("qcd:s3://bucket/qcd.zarr") == ("qcd", "s3://bucket/qcd.zarr")
    assert parse_sample("s3://bucket/qcd.zarr") == (None, "s3://bucket/qcd.zarr")
    assert parse_sample("/data/hbb.zarr") == (None, "/data/hbb.zarr")


@pytest.mark.parametrize("workers", [0, 2])
def test_a_mixed_stream_follows_the_target_and_names_every_jet_s_sample(two_samples, moto_server, workers):
    data, collection, config = two_samples
    stats = read_stats(collection, config.hash)
    target = np.stack([stats.class_hists[c] * stats.weight_tables[c] for c in config.weights.classes])
    known = {}  # sample → its jets' (event, ijet, pT)
    for index, member in enumerate(collection):
        table = member.dataset.read_all(["event", "ijet", "jet_pt"], {})
        known[index] = set(zip(table.jets["event"].tolist(), table.jets["ijet"].tolist(),
                               np.float32(table.jets["jet_pt"]).tolist(), strict=True))
    ds = JetDataset(data, config, batch_size=64, seed=3, jets_per_epoch=5000, observers=True,
                    storage_options=moto_server.options)
    assert ds.sample_names == ("ttbar", "qcd")
    batches = []
    for epoch in range(2):
        ds.set_epoch(epoch)
        batches += list(torch.utils.data.DataLoader(ds, batch_size=None, num_workers=workers))
    delivered = histogram(batches, config)
    assert variation(delivered, target) < 0.12
    seen = np.zeros(2)
    for batch in batches:
        for sample, event, ijet, pt in zip(batch["_sample_"].tolist(), batch["event"].tolist(),
                                           batch["ijet"].tolist(), batch["jet_pt"].tolist(), strict=True):
            assert (event, ijet, pt) in known[sample]
            seen[sample] += 1
    assert seen.min() > 0.2 * seen.sum()  # both samples feed the stream


def test_proportions_replace_the_samples_natural_shares(two_samples, moto_server):
    data, _, config = two_samples
    ds = JetDataset(data, config, batch_size=100, seed=5, jets_per_epoch=2000, observers=True,
                    storage_options=moto_server.options, proportions={"ttbar": 0.8, "qcd": 0.2})
    counts = []
    for epoch in range(3):
        ds.set_epoch(epoch)
        counts += [np.bincount(b["_sample_"].numpy(), minlength=2) for b in ds]
    counts = np.stack(counts)
    assert np.abs(counts[:, 0] - 80).max() <= 2  # every batch has the asked composition (within a jet)
    assert counts[:, 0].sum() / counts.sum() == pytest.approx(0.8, abs=0.01)
    with pytest.raises(SchemaError, match="not among ttbar, qcd"):
        JetDataset(data, config, batch_size=100, storage_options=moto_server.options, proportions={"wjets": 1})


def test_schemas_must_agree_on_what_the_config_reads(dask_client, sample_files, two_samples, tmp_path):
    data, _, config = two_samples
    schema = load_schema("cms_ak4").to_dict()
    schema["blocks"].pop("sv")
    other = tmp_path / "no_sv.zarr"
    assert run_convert(dask_client, sample_files[:1], other, schema=schema_from_dict(schema)).ok
    with pytest.raises(SchemaError, match=rf"{other}: .*variable 'jet_sv_\w+' is neither a column"):
        JetDataset({"ttbar": data["ttbar"], "nosv": str(other)}, config, batch_size=64)


@pytest.mark.slow
def test_commands_take_several_datasets(two_samples, moto_server, tmp_path, capsys):
    data, collection, _ = two_samples
    names = [f"{name}:{url}" for name, url in data.items()]
    options = ["--storage-options", json.dumps(moto_server.options)]
    assert main(["inspect", *names, *options]) == 0
    shown = capsys.readouterr().out
    assert "(sample ttbar)" in shown and f"union    {collection.n_jets:,} jets in 2 datasets" in shown
    assert main(["verify", *names, *options]) == 0
    shards = sum(len(m.dataset.manifest.shards) for m in collection)
    assert capsys.readouterr().out.startswith(f"{shards} of {shards} shard(s) verified")
    assert main(["export-weaver", *names, "--config", str(CONFIG), "-o", str(tmp_path / "w.yaml"), *options]) == 0
    assert "preprocess" in (tmp_path / "w.yaml").read_text()
    assert main(["export-weaver", names[0], "--config", str(CONFIG), "-o", str(tmp_path / "x.yaml"), *options]) == 4
    assert "run `jetstore stats` first" in capsys.readouterr().err
