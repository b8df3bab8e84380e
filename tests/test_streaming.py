"""Streaming as deployed: S3 behind a latency + byte-counting proxy, DataLoader workers and DDP ranks each
following the class target, lengths that match what is delivered, natural epochs, threads."""

from __future__ import annotations

import copy
import logging
import os
import subprocess
import sys

import numpy as np
import pytest
import s3fs
import torch
import yaml

from jetstore import JetDataset
from jetstore.config import load_training_config
from jetstore.config.weaver import training_config_from_dict
from jetstore.dataset.dataset import Dataset
from jetstore.errors import DatasetError
from jetstore.model.layout import Layout
from jetstore.sampler import World
from jetstore.stats.result import write_stats
from jetstore.stats.run import compute_stats
from tests.fixtures.mixing import histogram, target_of, variation
from tests.helpers import REPO, run_convert
from tests.proxy import LatencyProxy

JETCLASS_CONFIG = REPO / "tests/fixtures/weaver_jetclass.yaml"
AK4_CONFIG = yaml.safe_load((REPO / "tests/fixtures/weaver_cms_ak4.yaml").read_text())
CLASSES = ("label_QCD", "label_Hbb", "label_Hcc", "label_Wqq")


@pytest.fixture(scope="module")
def one_class_per_file(dask_client, tmp_path_factory):
    """JetClass-style inputs, one class per file (600 jets each), in 32-jet units so every slot reads many."""
    pytest.importorskip("ROOT")
    directory = tmp_path_factory.mktemp("jetclass")
    files = []
    for seed, label in enumerate(CLASSES, start=11):
        path = directory / f"{label}.root"
        subprocess.run([sys.executable, str(REPO / "tests/fixtures/make_sample.py"), "jetclass", str(path), "--jets",
                        "600", "--seed", str(seed), "--label", label], check=True, capture_output=True)
        files.append(str(path))
    out = directory / "ds.zarr"
    assert run_convert(dask_client, files, out, "zarr", schema="jetclass", layout=Layout(32, 1024)).ok
    dataset = Dataset.open(str(out))
    config = load_training_config(JETCLASS_CONFIG)
    write_stats(dataset, compute_stats(dataset, config, dask_client, log=lambda _: None))
    return dataset, config


@pytest.mark.slow
def test_every_rank_and_worker_follows_the_class_target(one_class_per_file):
    """2 ranks × 2 workers on one-class-per-file data: every batch of every slot has the target's class
    composition (within one jet), every slot's class fractions are within 4σ, and its (class, pT, eta)
    distribution is weaver's target (total variation)."""
    dataset, config = one_class_per_file
    target = target_of(dataset, config)
    fractions = target.sum(axis=(1, 2)) / target.sum()
    size = 128
    for rank in range(2):
        for worker in range(2):
            ds = JetDataset(dataset.url, config, batch_size=size, seed=4, jets_per_epoch=2000, observers=True,
                            world=World(rank, 2, worker, 2))
            batches = []
            for epoch in range(20):
                ds.set_epoch(epoch)
                batches += list(ds)
            counts = np.stack([np.bincount(b["_label_"].numpy(), minlength=4) for b in batches])
            assert np.abs(counts - size * fractions).max() < 2, (rank, worker)
            n = counts.sum()
            pulls = (counts.sum(axis=0) / n - fractions) / np.sqrt(fractions * (1 - fractions) / n)
            assert np.abs(pulls).max() < 4, (rank, worker, pulls)
            delivered = histogram(batches, config)
            assert variation(delivered, target) < 0.1, (rank, worker)


@pytest.mark.slow
def test_dataloader_workers_deliver_len_batches_each_balanced(one_class_per_file):
    dataset, config = one_class_per_file
    ds = JetDataset(dataset.url, config, batch_size=64, seed=2, jets_per_epoch=1500)
    counts = {w: np.zeros(4) for w in range(2)}
    for epoch in range(3):
        ds.set_epoch(epoch)
        loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2)
        batches = list(loader)
        assert len(batches) == len(loader) == len(ds) > 10
        for index, batch in enumerate(batches):  # the loader takes its workers' batches in turn
            counts[index % 2] += np.bincount(batch["_label_"].numpy(), minlength=4)
    fractions = target_of(dataset, config).sum(axis=(1, 2))
    fractions /= fractions.sum()
    for worker, total in counts.items():
        np.testing.assert_allclose(total / total.sum(), fractions, atol=0.01, err_msg=f"worker {worker}")


@pytest.mark.slow
def test_length_does_not_depend_on_the_worker_count(one_class_per_file):
    dataset, config = one_class_per_file
    lengths = {JetDataset(dataset.url, config, batch_size=64, seed=2, jets_per_epoch=1500,
                          world=World(0, 2, 0, workers)).__len__() for workers in (1, 2, 3, 5)}
    assert len(lengths) == 1
    delivered = sum(len(list(JetDataset(dataset.url, config, batch_size=64, seed=2, jets_per_epoch=1500,
                                        world=World(1, 2, worker, 3)))) for worker in range(3))
    assert delivered == lengths.pop()


@pytest.mark.slow
def test_threads_give_the_same_batches(one_class_per_file):
    dataset, config = one_class_per_file

    def batches(threads):
        ds = JetDataset(dataset.url, config, batch_size=100, seed=9, jets_per_epoch=1200, threads=threads)
        return [b["pf_features"].numpy().copy() for b in ds]

    one, three = batches(1), batches(3)
    assert len(one) == len(three) > 5
    for a, b in zip(one, three, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_natural_epochs_are_never_empty(one_class_per_file, caplog):
    """Natural weighted epochs (no jets_per_epoch) hold the expected weighted jets in whole batches; one
    smaller than a batch per rank defaults to the dataset's size, says so, and is never empty."""
    dataset, config = one_class_per_file
    natural = JetDataset(dataset.url, config, batch_size=64, seed=1)
    weighted = natural.spec.units.expected.sum()
    assert 64 < weighted < 1000 and abs(len(natural) - weighted / 64) < 2  # round 0 as drawn
    for epoch in range(3):
        natural.set_epoch(epoch)
        assert len(list(natural)) == len(natural)
    with caplog.at_level(logging.WARNING, logger="jetstore"):
        ds = JetDataset(dataset.url, config, batch_size=512, seed=1, world=World(0, 2))
    assert "less than a batch per rank" in caplog.text
    for epoch in range(3):
        ds.set_epoch(epoch)
        assert len(list(ds)) == len(ds) >= 1


@pytest.mark.slow
def test_data_without_the_configs_classes_is_refused_at_construction(one_class_per_file):
    """Four one-class files; a config training on two classes none of them holds: one line at construction (was:
    an epoch that never yields)."""
    dataset, _ = one_class_per_file
    options = yaml.safe_load(JETCLASS_CONFIG.read_text())
    options["labels"]["value"] = ["label_Hgg", "label_H4q"]
    options["weights"]["reweight_classes"], options["weights"]["class_weights"] = ["label_Hgg", "label_H4q"], [1, 1]
    with pytest.raises(DatasetError, match=r"no jet carries one of the config's classes \(label_Hgg, label_H4q\)"):
        JetDataset(dataset.url, training_config_from_dict(options), batch_size=64)


@pytest.fixture(scope="module")
def bigger_ak4(dask_client, sample_files, tmp_path_factory):
    """24 copies of the bundled sample (~50k jets, 512-jet units) and stats without weights."""
    directory = tmp_path_factory.mktemp("copies")
    inputs = []
    for copy_index in range(12):
        for path in sample_files:
            link = directory / f"c{copy_index}_{os.path.basename(path)}"
            link.symlink_to(path)
            inputs.append(str(link))
    out = directory / "ds.zarr"
    assert run_convert(dask_client, inputs, out, "zarr", layout=Layout(512)).ok
    dataset = Dataset.open(str(out))
    options = copy.deepcopy(AK4_CONFIG)
    options.pop("weights")
    config = training_config_from_dict(options)
    write_stats(dataset, compute_stats(dataset, config, dask_client, log=lambda _: None))
    return dataset, config


@pytest.mark.slow
def test_slots_share_each_class_so_none_reads_past_its_round(bigger_ak4, dask_client):
    """Weighted full epochs split over ranks and DataLoader workers read together little more than the units one
    slot reads: every slot gets its share of every class (dealing whole units left slots short of the rare
    classes, each up-sampled into a few units, and a slot short of a class read on into the next round, every
    class's units, until one of that class came)."""
    dataset, _ = bigger_ak4
    config = training_config_from_dict(copy.deepcopy(AK4_CONFIG))
    write_stats(dataset, compute_stats(dataset, config, dask_client, log=lambda _: None))

    def units_read(world: World, epoch: int) -> int:
        ds = JetDataset(dataset.url, config, batch_size=256, seed=3, jets_per_epoch=dataset.manifest.n_jets,
                        world=world)
        ds.set_epoch(epoch)
        for _ in ds:
            pass
        assert ds.last_stream is not None
        return ds.last_stream.units_read

    for epoch in range(3):  # ~36 units an epoch: a slot's few units, and a cut piece of every class, read twice
        one = units_read(World(0, 1, 0, 1), epoch)
        for ranks, workers, most in ((2, 2, 2.4), (1, 8, 3.7)):  # whole units dealt: 2.1-3.1× and 3.8-4.9×
            split = [units_read(World(r, ranks, w, workers), epoch) for r in range(ranks) for w in range(workers)]
            assert sum(split) <= most * one, (epoch, ranks, workers, split, one)


@pytest.mark.slow
def test_s3_reads_are_exact_ranges(bigger_ak4, moto_server, s3_env):
    """Through a proxy adding latency and counting bytes: a full epoch fetches less than 1.5× the stored
    bytes per delivered jet, and an epoch of one batch a small fraction of the dataset."""
    dataset, config = bigger_ak4
    s3_env(moto_server)
    moto_server.make_bucket("stream")
    fs = s3fs.S3FileSystem(endpoint_url=moto_server.endpoint, key=moto_server.key, secret=moto_server.secret)
    fs.put(dataset.root + "/", "stream/ds.zarr/", recursive=True)
    stored = dataset.manifest.bytes
    host, port = moto_server.endpoint.removeprefix("http://").split(":")
    with LatencyProxy((host, int(port)), latency=0.005) as proxy:
        options = {"endpoint_url": proxy.url}
        ds = JetDataset("s3://stream/ds.zarr", config, batch_size=256, seed=3, storage_options=options)
        before = proxy.bytes_down
        jets = sum(len(b["_label_"]) for b in ds)
        fetched = proxy.bytes_down - before
        assert jets > 0.9 * dataset.manifest.n_jets
        per_jet = stored / dataset.manifest.n_jets
        assert fetched / jets < 1.5 * per_jet, (fetched / jets, per_jet)
        small = JetDataset("s3://stream/ds.zarr", config, batch_size=256, seed=5, jets_per_epoch=256,
                           storage_options=options)
        before = proxy.bytes_down
        assert sum(len(b["_label_"]) for b in small) == 256
        small_fraction = (proxy.bytes_down - before) / stored
        assert small_fraction < 0.1, small_fraction
        assert proxy.requests > 0
