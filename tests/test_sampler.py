"""The streaming sampler: content against numpy and weaver-core, determinism, resume, DDP, statistics."""

from __future__ import annotations

import copy

import awkward as ak
import numpy as np
import pytest
import torch
import yaml

from jetstore import JetDataset
from jetstore.config.weaver import training_config_from_dict
from jetstore.dataset.dataset import Dataset
from jetstore.errors import DatasetError
from jetstore.sampler import World
from jetstore.sampler.handover import Handover
from jetstore.stats.result import write_stats
from jetstore.stats.run import compute_stats
from tests.helpers import REPO, run_convert

CONFIG = yaml.safe_load((REPO / "tests/fixtures/weaver_cms_ak4.yaml").read_text())


def config_with(**changes):
    options = copy.deepcopy(CONFIG)
    options.update(changes)
    return training_config_from_dict(options)


EVAL_CONFIG = config_with(
    observers=["jet_pt", "jet_eta", "event", "ijet"],
    new_variables={**CONFIG["new_variables"], "pt_log_wrapped": "jet_pfcand_pt_log + 0"},
    inputs={**CONFIG["inputs"],
            "pf_wrap": {"length": 16, "pad_mode": "wrap", "vars": [["pt_log_wrapped", 1.0, 0.5, -2, 2]]},
            "jet_features": {"length": None, "vars": ["jet_pt", ["jet_eta", 0, 2, -1, 1]]}},
)


def converted(client, files, folder, fmt: str) -> Dataset:
    """The bundled sample, small units (128 jets) so epochs hold many of them, with stats for two configs."""
    from jetstore.model.layout import Layout

    out = folder / f"ds.{fmt}"
    assert run_convert(client, files, out, fmt, layout=Layout(chunk_jets=128, chunk_values=2048)).ok
    ds = Dataset.open(str(out))
    for config in (config_with(), EVAL_CONFIG):
        write_stats(ds, compute_stats(ds, config, client, log=lambda _: None))
    return ds


@pytest.fixture(scope="module")
def dataset(dask_client, sample_files, tmp_path_factory):
    return converted(dask_client, sample_files, tmp_path_factory.mktemp("sampler"), "zarr")


@pytest.fixture(scope="module", params=["zarr", "parquet"])
def each_format(request, dataset, dask_client, sample_files, tmp_path_factory):
    """:func:`dataset`, and its Parquet twin (Arrow's read-only buffers beside computed variables in one group)."""
    if request.param == "zarr":
        return dataset
    return converted(dask_client, sample_files, tmp_path_factory.mktemp("sampler"), "parquet")


def collect(ds, limit=None):
    batches = []
    for batch in ds:
        batches.append({k: v.numpy().copy() for k, v in batch.items()})
        if limit and len(batches) >= limit:
            break
    return batches


def expected_inputs(dataset, config, stats):
    """Every selected jet's inputs computed independently with numpy/awkward (no jetstore kernels)."""
    table = dataset.read_all()
    jets = table.jets
    selected = (jets["jet_pt"] > 20) & (np.abs(jets["jet_eta"]) < 2.5) & (jets["label_undef"] == 0)
    jagged = {}
    for block in table.blocks.values():
        for name, flat in block.features.items():
            jagged[name] = ak.unflatten(flat, block.counts)
    jagged["pfcand_deta_raw"] = jagged["jet_pfcand_deta"]
    jagged["pfcand_dphi_raw"] = jagged["jet_pfcand_dphi"]
    jagged["pfcand_dxy_t"] = np.tanh(jagged["jet_pfcand_dxy"] * 10)
    jagged["pfcand_dz_t"] = np.tanh(jagged["jet_pfcand_dz"] * 10)
    jagged["pfcand_mask"] = ak.ones_like(jagged["jet_pfcand_pt_log"])
    jagged["sv_mask"] = ak.ones_like(jagged["jet_sv_pt_log"])
    jagged["pt_log_wrapped"] = jagged["jet_pfcand_pt_log"]
    out = {}
    for group in config.inputs:
        columns = []
        for variable in group.variables:
            center, scale = variable.center, variable.scale
            if center == "auto":
                center, scale = stats.variables[variable.name].center, stats.variables[variable.name].scale
            if group.length is None:
                x = jets[variable.name][selected].astype(np.float32)
                if center is not None:
                    x = np.clip((x - np.float32(center)) * np.float32(scale), variable.min, variable.max)
                columns.append(x)
                continue
            rows = []
            for values in ak.to_list(jagged[variable.name][selected]):
                x = np.asarray(values, np.float32)
                if center is not None:
                    x = np.clip((x - np.float32(center)) * np.float32(scale), variable.min, variable.max)
                if group.pad_mode == "wrap":
                    row = np.resize(x, group.length) if len(x) else np.zeros(group.length, np.float32)
                else:
                    row = np.full(group.length, variable.pad_value, np.float32)
                    row[:min(len(x), group.length)] = x[:group.length]
                rows.append(row)
            columns.append(np.stack(rows))
        out[group.name] = np.stack(columns, axis=1)
    labels = np.stack([jets[c][selected] for c in config.label_columns], axis=1)
    out["_label_"] = labels.argmax(axis=1)
    out["jet_pt"] = jets["jet_pt"][selected]
    return out


def test_batches_equal_an_independent_computation(each_format):
    from jetstore.stats.result import read_stats

    dataset = each_format

    stats = read_stats(dataset, EVAL_CONFIG.hash)
    ds = JetDataset(dataset.url, EVAL_CONFIG, batch_size=100, training=False, observers=True)
    batches = collect(ds)
    got = {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}
    expected = expected_inputs(dataset, EVAL_CONFIG, stats)
    assert len(got["_label_"]) == len(expected["_label_"]) > 1000
    assert [len(b["_label_"]) for b in batches[:-1]] == [100] * (len(batches) - 1)
    for name, values in expected.items():
        np.testing.assert_allclose(got[name], values, rtol=1e-6, atol=1e-6, err_msg=name)
    assert got["pf_features"].shape[1:] == (10, 64) and got["jet_features"].shape[1:] == (2,)
    mask = got["pf_mask"][:, 0, :]
    assert set(np.unique(mask)) <= {0.0, 1.0} and (np.diff(mask, axis=1) <= 0).all()  # ones then zeros


def test_same_tensors_as_weaver_core(dataset, sample_files, tmp_path):
    """weaver-core's own SimpleIterDataset, fed the config exported with our stats, on the same ROOT jets."""
    from weaver.utils.dataset import SimpleIterDataset

    from jetstore.interop.weaver import export_weaver_yaml
    from jetstore.stats.result import read_stats

    config = config_with(observers=["jet_pt", "jet_eta", "event", "ijet"])
    stats = read_stats(dataset, config.hash)
    exported = tmp_path / "weaver.yaml"
    exported.write_text(export_weaver_yaml(config, stats))
    weaver = SimpleIterDataset({"_": [sample_files[0]]}, str(exported), for_training=False,
                               load_range_and_fraction=((0, 1), 1, 1), fetch_by_files=True, fetch_step=1,
                               name="test")
    theirs = {}
    for X, y, Z in weaver:
        key = (int(Z["event"]), int(Z["ijet"]), float(Z["jet_pt"]))
        theirs[key] = ({k: np.asarray(v) for k, v in X.items()}, int(y["_label_"]))
    ours = 0
    ds = JetDataset(dataset.url, config, batch_size=64, training=False, observers=True)
    for batch in ds:
        for i in range(len(batch["_label_"])):
            key = (int(batch["event"][i]), int(batch["ijet"][i]), float(batch["jet_pt"][i]))
            if key not in theirs:  # a jet of the other input file
                continue
            inputs, label = theirs[key]
            assert int(batch["_label_"][i]) == label
            for name in config.options["inputs"]:
                np.testing.assert_allclose(batch[name][i].numpy(), inputs[name], rtol=1e-6, atol=1e-6,
                                           err_msg=f"{name} {key}")
            ours += 1
    assert ours == len(theirs) > 500


def test_determinism_and_epochs(dataset):
    make = lambda: JetDataset(dataset.url, config_with(), batch_size=64, seed=7, jets_per_epoch=3000)  # noqa: E731
    first, again = collect(make()), collect(make())
    assert len(first) == len(make()) and 40 <= len(first) <= 3000 // 64
    for a, b in zip(first, again, strict=True):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
    other = make()
    other.set_epoch(1)
    second_epoch = collect(other)
    assert not np.array_equal(first[0]["pf_features"], second_epoch[0]["pf_features"])
    seeded = JetDataset(dataset.url, config_with(), batch_size=64, seed=8, jets_per_epoch=3000)
    assert not np.array_equal(first[0]["pf_features"], collect(seeded, 1)[0]["pf_features"])


@pytest.mark.parametrize(("world", "read_factor"), [(World(), 1.0), (World(1, 2), 1.0), (World(1, 2), "auto")])
@pytest.mark.parametrize("stop_after", [1, 9, 20])
def test_resume_gives_exactly_the_next_batch(dataset, world, read_factor, stop_after):
    make = lambda: JetDataset(dataset.url, config_with(), batch_size=48, seed=3, jets_per_epoch=2500,  # noqa: E731
                              world=world, window_jets=4 * 256, read_factor=read_factor)
    reference = collect(make())
    interrupted = make()
    collect(interrupted, stop_after)
    state = interrupted.state_dict()
    assert state["batches"] == stop_after
    resumed = make()
    resumed.load_state_dict(state)
    rest = collect(resumed)
    assert len(rest) == len(reference) - stop_after
    for a, b in zip(reference[stop_after:], rest, strict=True):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_ddp_ranks_and_workers_are_disjoint_with_equal_counts(dataset):
    """No weights: each selected jet once per epoch; ranks × workers split it without overlap."""
    config = config_with(observers=["jet_pt", "event", "ijet"], weights=None)
    write_stats(dataset, compute_stats(dataset, config, _client(), log=lambda _: None))
    seen, lengths = [], []
    for rank in range(2):
        for worker in range(3):
            ds = JetDataset(dataset.url, config, batch_size=32, seed=1, observers=True,
                            world=World(rank, 2, worker, 3))
            batches = collect(ds)
            lengths.append(len(batches))
            seen.append({(int(e), int(j), float(p)) for b in batches
                         for e, j, p in zip(b["event"], b["ijet"], b["jet_pt"], strict=True)})
            assert sum(len(b["_label_"]) for b in batches) == 32 * len(batches) == len(seen[-1])
        assert sum(lengths[-3:]) == len(ds)
    assert sum(lengths[:3]) == sum(lengths[3:])
    assert all(not (a & b) for i, a in enumerate(seen) for b in seen[i + 1:])
    everything = set().union(*seen)
    total = Dataset.open(dataset.url).read_all().jets
    selected = int(((total["jet_pt"] > 20) & (np.abs(total["jet_eta"]) < 2.5) & (total["label_undef"] == 0)).sum())
    # every slot yields the poorest slot's whole batches: with ~3 units of 128 jets per slot that is ~75%
    assert 0.7 * selected <= len(everything) <= selected


def test_train_and_holdout_splits_partition_the_jets(dataset):
    """Sequential reads of ``train`` and ``holdout`` are disjoint, together every selected jet, the held-out part
    about the asked fraction with every class; training with the ``train`` split never yields a held-out jet."""
    def jets(split, **extra):
        ds = JetDataset(dataset.url, EVAL_CONFIG, batch_size=64, training=False, observers=True, split=split,
                        holdout=0.2, **extra)
        return {(int(e), int(j), float(pt)): int(label) for b in collect(ds)  # event numbers repeat across files
                for e, j, pt, label in zip(b["event"], b["ijet"], b["jet_pt"], b["_label_"], strict=True)}

    everything, train, held = jets("all"), jets("train"), jets("holdout")
    assert not set(train) & set(held) and {**train, **held} == everything
    assert 0.17 < len(held) / len(everything) < 0.23
    assert set(held.values()) == set(everything.values())  # every class is held out too
    assert jets("holdout") == held  # stable
    trained = JetDataset(dataset.url, EVAL_CONFIG, batch_size=64, seed=3, observers=True, split="train",
                         holdout=0.2, jets_per_epoch=3000)
    delivered = {(int(e), int(j), float(pt)) for b in collect(trained)
                 for e, j, pt in zip(b["event"], b["ijet"], b["jet_pt"], strict=True)}
    assert len(delivered) > 1000 and not delivered & set(held)


_CLIENT = []


def _client():
    return _CLIENT[0]


@pytest.fixture(autouse=True)
def _remember_client(dask_client):
    _CLIENT[:] = [dask_client]


def test_weighted_sampling_statistics(dataset):
    """Per epoch: class fractions follow class_weights within 1%; within each class the delivered
    pT-eta histogram is the reweighted (flat) target within its statistical errors; and every jet of
    non-zero weight is used across epochs."""
    from jetstore.stats.result import read_stats

    config = config_with(observers=["jet_pt", "jet_eta", "event", "ijet"])
    stats = read_stats(dataset, config.hash)
    spec = config.weights
    per_class = {c: np.zeros((len(spec.x_bins) - 1, len(spec.y_bins) - 1)) for c in spec.classes}
    totals = np.zeros(len(spec.classes))
    used = set()
    epochs, jets_per_epoch = 12, 6000
    ds = JetDataset(dataset.url, config, batch_size=100, seed=11, jets_per_epoch=jets_per_epoch, observers=True)
    for epoch in range(epochs):
        ds.set_epoch(epoch)
        for batch in ds:
            labels = batch["_label_"].numpy()
            totals += np.bincount(labels, minlength=len(spec.classes))
            for c, name in enumerate(spec.classes):
                mine = labels == c
                hist, _, _ = np.histogram2d(batch["jet_pt"].numpy()[mine], batch["jet_eta"].numpy()[mine],
                                            bins=[spec.x_bins, spec.y_bins])
                per_class[name] += hist
            used |= {(int(e), int(j), float(p)) for e, j, p in zip(batch["event"], batch["ijet"], batch["jet_pt"],
                                                                   strict=True)}
    fractions = totals / totals.sum()
    np.testing.assert_allclose(fractions, 1 / 6, atol=0.01)
    scale = jets_per_epoch / sum(float((stats.class_hists[c] * stats.weight_tables[c]).sum()) for c in spec.classes)
    for name in spec.classes:
        target = stats.class_hists[name] * stats.weight_tables[name]
        expected = target / target.sum() * per_class[name].sum()
        occupied = expected > 20
        pulls = (per_class[name][occupied] - expected[occupied]) / np.sqrt(expected[occupied] * 4)
        assert np.abs(pulls).max() < 5, name  # errors inflated ×2 for repeats of the same jets
        assert per_class[name][~(expected > 0)].sum() == 0
    assert scale > 1  # the rare classes were up-sampled
    table = Dataset.open(dataset.url).read_all().jets
    weighted = set()
    for i in range(len(table["jet_pt"])):
        if table["label_undef"][i] == 0 and table["jet_pt"][i] > 20 and abs(table["jet_eta"][i]) < 2.5:
            weighted.add((int(table["event"][i]), int(table["ijet"][i]), float(table["jet_pt"][i])))
    assert len(used & weighted) > 0.97 * len(weighted)


def test_missing_stats_and_wrong_seed_are_clear(dataset):
    config = config_with(selection="(jet_pt > 25) & (label_undef == 0)")
    with pytest.raises(DatasetError, match="run `jetstore stats` first"):
        JetDataset(dataset.url, config, batch_size=10)
    ds = JetDataset(dataset.url, config_with(), batch_size=10, seed=1, jets_per_epoch=100)
    with pytest.raises(DatasetError, match="seed"):
        ds.load_state_dict({"epoch": 0, "batches": 1, "seed": 2})


def test_dataloader_with_workers_and_resume(dataset):
    make = lambda: JetDataset(dataset.url, config_with(), batch_size=40, seed=5, jets_per_epoch=1200)  # noqa: E731
    loader = lambda ds: torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2)  # noqa: E731
    full = [b["pf_features"].numpy().copy() for b in loader(make())]
    assert len(full) == len(make()) == len(loader(make())) > 20
    resumed = make()
    resumed.load_state_dict({"epoch": 0, "batches": 7, "seed": 5})
    rest = [b["pf_features"].numpy().copy() for b in loader(resumed)]
    assert len(rest) == len(full) - 7
    for a, b in zip(full[7:], rest, strict=True):
        np.testing.assert_array_equal(a, b)


def test_worker_batches_held_are_never_overwritten(dataset):
    """A DataLoader worker reuses its shared blocks only for batches the main process has let go of: batches kept
    (not copied) by the training loop still hold their values at the end, equal to those read in process (one
    worker reads the same slot as none), and batches copied and dropped at once equal them too (blocks reused)."""
    make = lambda: JetDataset(dataset.url, config_with(), batch_size=40, seed=5, jets_per_epoch=1200)  # noqa: E731
    expected = [b["pf_features"].numpy().copy() for b in make()]
    held = list(torch.utils.data.DataLoader(make(), batch_size=None, num_workers=1))
    copied = [b["pf_features"].numpy().copy() for b in torch.utils.data.DataLoader(make(), batch_size=None,
                                                                                   num_workers=1)]
    assert len(held) == len(copied) == len(expected) > 20
    for a, b, c in zip(expected, held, copied, strict=True):
        np.testing.assert_array_equal(a, b["pf_features"].numpy())
        np.testing.assert_array_equal(a, c)


def test_a_new_worker_process_cuts_batches_around_blocks_still_held(dataset):
    """Non-persistent workers: a batch of the last epoch that the training loop still holds keeps its block, the
    next epoch's new worker process takes the blocks around it, and every batch equals the one read in process."""
    make = lambda: JetDataset(dataset.url, config_with(), batch_size=40, seed=5, jets_per_epoch=1200)  # noqa: E731
    ds = make()
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=1)
    batches = iter(loader)
    next(batches)
    held = next(batches)  # in the worker's second block
    for _ in batches:  # (the rest of the epoch, each batch dropped at once)
        pass
    held_values = held["pf_features"].numpy().copy()
    ds.set_epoch(1)
    second = [b["pf_features"].numpy().copy() for b in loader]
    reference = make()
    reference.set_epoch(1)
    expected = [b["pf_features"].numpy().copy() for b in reference]
    assert len(second) == len(expected) > 20
    for a, b in zip(expected, second, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(held["pf_features"].numpy(), held_values)


def test_a_worker_block_travels_once_and_blocks_held_by_a_replaced_worker_are_left_alone():
    """A block's handle goes to the main process with its first batch only; a worker takes its blocks around one
    still held by a batch of the worker process it replaced, and reuses a block once its batch is dropped."""
    from multiprocessing.reduction import ForkingPickler

    handover = Handover()
    handover.table.numpy()[1] = 7  # slot 1 (worker 0's second block): a replaced process's batch, still held

    def send(value: float) -> tuple[int, bytes, dict[str, torch.Tensor]]:
        block = handover.block(0, 4096)
        array = block((4, 8), np.float32)
        array[:] = value
        payload = bytes(ForkingPickler.dumps(block.batch({"x": array})))
        return block.slot, payload, ForkingPickler.loads(payload)

    first_slot, first_payload, first = send(1.0)
    second_slot, _, second = send(2.0)
    assert (first_slot, second_slot) == (0, 2)
    assert (first["x"].numpy() == 1).all() and (second["x"].numpy() == 2).all()
    del first, second
    again_slot, again_payload, again = send(3.0)
    assert again_slot == 0
    assert (again["x"].numpy() == 3).all()
    assert b"rebuild_storage" in first_payload and b"rebuild_storage" not in again_payload
    assert handover.table.numpy()[1] == 7


def test_reads_from_s3_like_from_local_disk(dataset, moto_server, s3_env):
    """The same dataset copied to a moto S3 bucket gives the same batches as from local disk."""
    import s3fs

    s3_env(moto_server)
    moto_server.make_bucket("sampler")
    fs = s3fs.S3FileSystem(endpoint_url=moto_server.endpoint, key=moto_server.key, secret=moto_server.secret)
    fs.put(dataset.root + "/", "sampler/ds.zarr/", recursive=True)
    make = lambda url: JetDataset(url, config_with(), batch_size=64, seed=2, jets_per_epoch=1500)  # noqa: E731
    local, remote = collect(make(dataset.url)), collect(make("s3://sampler/ds.zarr"))
    assert len(local) == len(remote) > 10
    for a, b in zip(local, remote, strict=True):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])


def test_damaged_or_missing_shards_are_named(dataset, tmp_path):
    import shutil

    copy_root = tmp_path / "copy.zarr"
    shutil.copytree(dataset.root, copy_root)
    shard = Dataset.open(str(copy_root)).manifest.shards[0]
    path = copy_root / shard.path
    import zipfile

    with zipfile.ZipFile(path) as archive:
        member = archive.getinfo("pfcand/jet_pfcand_pt_log/c/0")
    data = bytearray(path.read_bytes())
    data[member.header_offset + 30 + len(member.filename) + member.compress_size // 2] ^= 0xFF
    path.write_bytes(bytes(data))  # one flipped bit pattern inside a chunk the config reads
    ds = JetDataset(str(copy_root), config_with(), batch_size=64, training=False)
    with pytest.raises(DatasetError, match=f"shard {shard.path} is damaged"):
        collect(ds)
    path.unlink()
    with pytest.raises(DatasetError, match=f"shard {shard.path} is listed in the manifest but missing"):
        collect(JetDataset(str(copy_root), config_with(), batch_size=64, training=False))


@pytest.mark.parametrize("selection", ["jet_pt > 1e9", "label_undef == 1"])
def test_an_epoch_that_can_keep_no_jet_is_refused_in_seconds(dataset, selection):
    """Was: ``len(ds)`` batches promised, then no batch for ever (no stats to tell: no weights, manual
    standardisation). A selection keeping no jet, or keeping only jets with none of the config's labels."""
    import time

    manual = {name: {**group, "vars": [[v if isinstance(v, str) else v[0], None] for v in group["vars"]]}
              for name, group in CONFIG["inputs"].items()}
    config = config_with(selection=selection, weights=None, inputs=manual)
    start = time.perf_counter()
    ds = JetDataset(dataset.url, config, batch_size=64, seed=1)
    with pytest.raises(DatasetError, match=f"{dataset.url}: no jet to sample: every unit read gives none"):
        next(iter(ds))
    assert time.perf_counter() - start < 20


def test_a_shards_metadata_is_read_once(dataset, monkeypatch):
    """Opening a shard reads its metadata once, and not its zip directory: its tail (pointing at the chunk index),
    then the index and the zarr.json documents after it, in one request. Was the directory twice (a 2,048-jet
    epoch of 270k jets read 13 MB of metadata for 6 MB of units), then once (6.8 MB)."""
    import zipfile

    from jetstore.formats.base import TAIL_BYTES, MetadataCache
    from jetstore.formats.zarr import chunk_index
    from jetstore.formats.zarr import reader as zarr_reader

    monkeypatch.setattr(zarr_reader, "CACHE", MetadataCache())
    shard = dataset.manifest.shards[0]
    with zipfile.ZipFile(f"{dataset.root}/{shard.path}") as archive:
        index, directory = archive.getinfo(chunk_index.NAME).header_offset, archive.start_dir
    reader = dataset.source.reader(shard)
    assert shard.bytes - directory > TAIL_BYTES  # the directory is not all in the first read, of the tail
    assert reader.source.requests == 2
    assert TAIL_BYTES < reader.bytes_fetched <= TAIL_BYTES + directory - index


def test_shared_pieces_partition_every_unit_and_give_each_part_its_share():
    """Sharing a round's units among parts: every (unit, class) is cut into pieces that cover [0, 1) once over
    all parts; every part gets its weight's share of every class's expected rows, spread over the pT order;
    cutting the ranks' pieces again among workers keeps both; the rows a piece keeps partition the unit's."""
    from jetstore.sampler.schemes.shares import Pieces, kept

    rng = np.random.default_rng(5)
    yields = rng.exponential(100.0, size=(60, 3)) * (rng.random((60, 3)) < [0.9, 0.3, 0.05])  # class 2: rare
    yields[:3, 2] = 5000.0  # up-sampled into three big units
    order = rng.permutation(60)
    whole = Pieces.of(yields, np.zeros(60, np.int64))
    weights = np.array([3.0, 2.0, 2.0])
    parts = [whole.share(order[whole.index], 3, weights, k, np.random.default_rng(1)) for k in range(3)]
    for c in range(3):
        cover = np.zeros(60)
        for k, part in enumerate(parts):
            mine = part.stratum == c
            np.add.at(cover, part.index[mine], part.hi[mine] - part.lo[mine])
            assert part.rows[mine].sum() == pytest.approx(yields[:, c].sum() * weights[k] / weights.sum())
            if c == 0:  # spread over the pT order (the whole range, not a slice of it)
                assert np.ptp(order[part.index[mine]]) > 45
        np.testing.assert_allclose(cover[yields[:, c] > 0], 1.0)
    workers = [parts[1].share(order[parts[1].index], 3, np.array([1.0, 1.0]), w, np.random.default_rng(2))
               for w in range(2)]
    for c in range(3):
        rows = [w.rows[w.stratum == c].sum() for w in workers]
        assert rows == pytest.approx([yields[:, c].sum() * 2 / 7 / 2] * 2)
    strata = rng.integers(0, 3, size=256)  # one unit's rows; every row kept by exactly one part
    unit = int(parts[0].index[parts[0].stratum == 2][0])
    owners = np.zeros(256, np.int64)
    for part in parts:
        pieces = tuple((int(part.stratum[i]), float(part.lo[i]), float(part.hi[i]))
                       for i in np.nonzero(part.index == unit)[0])
        owners += kept(pieces, strata)
    np.testing.assert_array_equal(owners[np.isin(strata, np.nonzero(yields[unit] > 0)[0])], 1)
