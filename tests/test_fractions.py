"""The users' recipe: weighted epochs that are a fraction of the data (weaver's ParT recipe reads 1/10 of its jets
per epoch) read in proportion to what they deliver, follow the (class, pT, eta) target, and mix as well as an
i.i.d. draw. Data: jittered copies of the bundled sample (distinct jets, many small input files packed into
shards), on the moto S3 server behind the byte-counting proxy."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
import s3fs

from jetstore import JetDataset
from jetstore.config import load_training_config
from jetstore.dataset.dataset import Dataset
from jetstore.formats.base import TAIL_BYTES
from jetstore.formats.zarr import chunk_index
from jetstore.stats.result import write_stats
from jetstore.stats.run import compute_stats
from tests.fixtures.jittered import jittered_copies
from tests.fixtures.mixing import histogram, iid_variation, jet_keys, jet_weights, repeats, target_of, variation
from tests.helpers import REPO, forget_shard_metadata, run_convert
from tests.proxy import LatencyProxy

CONFIG = REPO / "tests" / "fixtures" / "weaver_cms_ak4.yaml"
BATCH = 256


@pytest.fixture(scope="module")
def jittered_ak4(dask_client, sample_files, moto_server, tmp_path_factory):
    """12 jittered copies of the bundled sample (30k jets in 24 small files, packed into 10k-jet shards) with
    weighted stats, on local disk and copied to a moto bucket."""
    directory = tmp_path_factory.mktemp("jittered")
    inputs = jittered_copies(sample_files, directory / "inputs", copies=12)
    out = directory / "ds.zarr"
    assert run_convert(dask_client, inputs, out, jets_per_shard=10_000).ok
    dataset = Dataset.open(str(out))
    config = load_training_config(CONFIG)
    write_stats(dataset, compute_stats(dataset, config, dask_client, log=lambda _: None))
    moto_server.make_bucket("fractions")
    fs = s3fs.S3FileSystem(endpoint_url=moto_server.endpoint, key=moto_server.key, secret=moto_server.secret)
    fs.put(dataset.root + "/", "fractions/ds.zarr/", recursive=True)
    return dataset, config


def test_a_shard_opens_on_s3_by_its_chunk_index_not_its_zip_directory(jittered_ak4, moto_server):
    """Opening a shard as a fresh process does, on S3 through the byte-counting proxy: its tail, then its chunk index
    with the zarr.json documents after it (two requests), never its zip directory; the index is a fraction of the
    directory (a 2,048-jet epoch of 270k jets read 3.2% of the dataset in directories, 3.0% in units)."""
    dataset, _ = jittered_ak4
    host, port = moto_server.endpoint.removeprefix("http://").split(":")
    with LatencyProxy((host, int(port)), latency=0) as proxy:
        remote = Dataset.open("s3://fractions/ds.zarr", {**moto_server.options, "endpoint_url": proxy.url})
        for shard in remote.manifest.shards:
            with zipfile.ZipFile(f"{dataset.root}/{shard.path}") as archive:
                index = archive.getinfo(chunk_index.NAME)
                directory = shard.bytes - archive.start_dir
                documents = sum(i.file_size + 30 + len(i.filename) for i in archive.infolist()
                                if i.filename.endswith("zarr.json"))
            forget_shard_metadata()
            before, requests = proxy.bytes_down, proxy.requests
            remote.source.reader(shard)
            wire = proxy.bytes_down - before
            print(shard.path, wire, directory, index.file_size, documents)
            assert index.file_size <= directory / 8
            assert proxy.requests - requests == 2
            assert TAIL_BYTES < wire <= TAIL_BYTES + documents + directory / 5, (wire, directory, documents)


@pytest.mark.slow
def test_a_tenth_weighted_epoch_fetches_what_it_delivers(jittered_ak4, moto_server):
    dataset, config = jittered_ak4
    n = dataset.manifest.n_jets
    stored = dataset.manifest.bytes / n
    host, port = moto_server.endpoint.removeprefix("http://").split(":")
    target = target_of(dataset, config)
    with LatencyProxy((host, int(port)), latency=0.002) as proxy:
        ds = JetDataset("s3://fractions/ds.zarr", config, batch_size=BATCH, seed=7, jets_per_epoch=n // 10,
                        observers=True, storage_options={**moto_server.options, "endpoint_url": proxy.url})
        ds.set_epoch(0)
        before = proxy.bytes_down
        first = list(ds)
        fetched = proxy.bytes_down - before
        delivered = sum(len(b["_label_"]) for b in first)
        assert delivered == len(ds) * BATCH
        # this toy sample is small (a natural weighted epoch of ~600 jets: the tenth is 4× up-sampled) and its
        # 2,048-jet units gave 16× the stored bytes per delivered jet; 256-jet units in packed shards ~3.5×
        assert fetched / delivered < 6 * stored, (fetched / delivered / stored)
        batches = first
        for epoch in range(1, 6):
            ds.set_epoch(epoch)
            batches += list(ds)
    mix = histogram(batches, config)
    assert variation(mix, target) < 0.15  # ~8k jets over 330 (class, pT, eta) cells: sampling noise ~0.1


def test_a_fraction_mixes_like_an_iid_draw(jittered_ak4):
    """Repeats within a few batches and the units feeding each batch, against an i.i.d. draw (with replacement,
    in proportion to the weights) of the same number of jets."""
    dataset, config = jittered_ak4
    n = dataset.manifest.n_jets
    ds = JetDataset(dataset.url, config, batch_size=BATCH, seed=11, jets_per_epoch=n // 10, observers=True)
    keys = [jet_keys(b) for b in ds]
    units, read = ds.last_stream.units_per_batch, ds.last_stream.units_read
    weights, _ = jet_weights(dataset, config)
    rng = np.random.default_rng(1)
    draws = rng.choice(len(weights), size=len(keys) * BATCH, p=weights / weights.sum())
    iid = [draws[i * BATCH:(i + 1) * BATCH] for i in range(len(keys))]
    unit_jets = dataset.unit_jets
    iid_units = np.mean([len(np.unique(d // unit_jets)) for d in iid])
    for window in (1, 4):
        assert repeats(keys, window) <= 1.5 * repeats(iid, window) + 0.01, window
    # a fraction reads few units (that is the point), and every batch draws from all of them: as many distinct
    # units as a draw from the units read would give, not as one from the whole dataset
    from_read = read * (1 - (1 - 1 / read) ** BATCH)
    assert np.mean(units) >= 0.7 * from_read, (np.mean(units), from_read, read, iid_units)


def test_auto_read_factor_thins_small_epochs_only(jittered_ak4):
    """``read_factor="auto"`` reads more units, each thinned, the smaller the epoch is against the (class, pT) bins
    it must fill: a 1/40 epoch's (class, pT, eta) histogram comes closer to the target than with whole units, and
    every epoch still delivers its batches."""
    dataset, config = jittered_ak4
    n = dataset.manifest.n_jets
    target = target_of(dataset, config)
    full = JetDataset(dataset.url, config, batch_size=BATCH, jets_per_epoch=n, read_factor="auto").plan
    per_epoch = {}
    for factor in (1.0, "auto"):
        ds = JetDataset(dataset.url, config, batch_size=BATCH, seed=3, jets_per_epoch=n // 40, observers=True,
                        read_factor=factor)
        per_epoch[factor] = []
        for epoch in range(6):
            ds.set_epoch(epoch)
            batches = list(ds)
            assert len(batches) == len(ds)
            per_epoch[factor].append(variation(histogram(batches, config), target))
    assert units_read(ds.plan) > 2.0 * units_read(ds.plan, factor=1.0)
    assert units_read(full) < 1.3 * units_read(full, factor=1.0)
    assert np.mean(per_epoch["auto"]) < 0.8 * np.mean(per_epoch[1.0]), per_epoch


def test_auto_read_factor_reads_a_whole_number_of_units_per_stratum(jittered_ak4):
    """``read_factor="auto"`` chooses per (sample, class, pT bin) stratum: in a 1/40 epoch every stratum reads a whole
    number of units per round, at least 2 (all it has if fewer, at most 16 times the reads with 1); one reading a
    whole number already keeps factor 1; every unit's stratum is its class (by weight) and pT bin (by jets), as
    the stored jets' own cells say."""
    dataset, config = jittered_ak4
    plan = JetDataset(dataset.url, config, batch_size=BATCH, jets_per_epoch=dataset.manifest.n_jets // 40,
                      read_factor="auto").plan
    units, factor = plan.units, plan.shape.read_factor
    weights, cells = jet_weights(dataset, config)
    rule = config.cell_rule()
    pt_bins, per_class = len(rule.x_edges) - 1, rule.n_bins
    first = np.cumsum([0] + [shard.n_jets for shard in dataset.manifest.shards])[units.shard]
    for u in np.nonzero(units.max_weight > 0)[0]:
        jets = slice(first[u] + units.start[u], first[u] + units.stop[u])
        kept = cells[jets] >= 0
        mine, weight = cells[jets][kept], weights[jets][kept]
        klass = np.bincount(mine // per_class, weights=weight, minlength=rule.n_classes).argmax()
        pt_bin = np.bincount(mine % per_class // (per_class // pt_bins), minlength=pt_bins).argmax()
        assert units.bin[u] == klass * pt_bins + pt_bin, u

    def per_stratum(read_factor) -> np.ndarray:  # units read per round
        return np.bincount(units.bin, weights=np.minimum(1.0, read_factor * plan.shape.scale * units.max_weight))

    before, after = per_stratum(1.0), per_stratum(factor)
    live = before > 0
    # a whole number, at least 2, or all it has, or as many as 16 times the reads give
    wanted = np.minimum(np.maximum(2.0, np.ceil(before - 1e-6)), np.bincount(units.bin, weights=units.max_weight > 0))
    wanted = np.minimum(wanted, per_stratum(16.0))
    assert (np.abs(after[live] - wanted[live]) < 1e-6).all()
    assert (factor[np.abs(before - wanted)[units.bin] < 1e-6] == 1.0).all()
    assert (np.abs(before[live] - wanted[live]) < 1e-6).mean() < 0.2


def units_read(plan, factor=None) -> float:
    """Units a round of ``plan`` reads, in expectation (with its own read factors, or ``factor``)."""
    factor = plan.shape.read_factor if factor is None else factor
    return float(np.minimum(1.0, factor * plan.shape.scale * plan.units.max_weight).sum())


def test_epochs_follow_the_target_as_closely_as_an_iid_draw(jittered_ak4):
    """Per-epoch total variation of the (class, pT, eta) histogram from weaver's target, mean over 6 epochs, against
    an i.i.d. draw's of the same size: half the data with whole units closer than i.i.d. (balanced draws of units,
    and of a read unit's rows cell by cell), 1/40 of it (750 jets, ~2 per cell) with ``read_factor="auto"`` within
    1.1× (independent coins per unit were 3-6× i.i.d.)."""
    dataset, config = jittered_ak4
    n = dataset.manifest.n_jets
    target = target_of(dataset, config)
    for fraction, factor, bound in ((2, 1.0, 1.0), (40, "auto", 1.1)):
        ds = JetDataset(dataset.url, config, batch_size=BATCH, seed=5, jets_per_epoch=n // fraction, observers=True,
                        read_factor=factor)
        per_epoch, jets = [], 0
        for epoch in range(6):
            ds.set_epoch(epoch)
            counts = histogram(list(ds), config)
            per_epoch.append(variation(counts, target))
            jets = int(counts.sum())
        assert np.mean(per_epoch) <= bound * iid_variation(target, jets, 32), (fraction, per_epoch)


def test_natural_epochs_read_as_auto_by_default_epochs_of_a_given_size_as_one(jittered_ak4):
    """A natural epoch (no ``jets_per_epoch``) is weaver's rejection-sampled one, a draw from all the data: by default
    it reads as ``read_factor="auto"``; an epoch of a given size reads the fewest bytes (1) unless asked."""
    dataset, config = jittered_ak4
    natural = JetDataset(dataset.url, config, batch_size=BATCH).plan
    auto = JetDataset(dataset.url, config, batch_size=BATCH, read_factor="auto").plan
    assert np.array_equal(natural.shape.read_factor, auto.shape.read_factor)
    assert units_read(natural) >= units_read(natural, factor=1.0)
    sized = JetDataset(dataset.url, config, batch_size=BATCH, jets_per_epoch=dataset.manifest.n_jets // 40).plan
    assert sized.shape.read_factor == 1.0
    assert JetDataset(dataset.url, config, batch_size=BATCH, read_factor=1).plan.shape.read_factor == 1.0
