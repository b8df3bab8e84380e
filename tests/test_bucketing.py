"""Batches grouped by multiplicity (``bucket``): each batch keeps its class composition and is trimmed to its own
longest jet per block; the jets delivered are those random batches deliver; resume and ranks as before; ParT's
outputs do not depend on the padded length; the built-in ParT and the network files train on such batches."""

from __future__ import annotations

import collections
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from jetstore import JetDataset
from jetstore.errors import DatasetError, SchemaError
from jetstore.sampler import World
from tests.helpers import REPO

CONFIG = str(REPO / "tests/fixtures/weaver_cms_ak4.yaml")
BATCH, WINDOW = 32, 1024  # chunks of WINDOW / 2 / BATCH = 16 batches


def batches_of(url, bucket, epoch=0, limit=None, **options):
    values = {"batch_size": BATCH, "seed": 4, "jets_per_epoch": 2400, "window_jets": WINDOW, "observers": True,
              **options}
    ds = JetDataset(url, CONFIG, bucket=bucket, **values)
    ds.set_epoch(epoch)
    out = []
    for batch in ds:
        out.append({k: v.numpy().copy() for k, v in batch.items()})
        if limit and len(out) == limit:
            break
    return ds, out


def counts(batch, group):
    return batch[group].sum(axis=(1, 2)).astype(int)


def keys(batch) -> list[tuple]:
    """Each jet's identity: (event, jet index, pT)."""
    return list(zip(*(np.asarray(batch[k]).tolist() for k in ("event", "ijet", "jet_pt")), strict=True))


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Small models on 2 shared cores: torch's own thread pool only slows them down (docs/training.md)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def epochs(train_dataset):
    """One epoch of random and of bucketed batches, same seed."""
    return {bucket: batches_of(train_dataset, bucket) for bucket in (False, True)}


def test_batches_keep_their_composition_and_are_trimmed_to_their_longest_jet(epochs):
    (plain, random), (bucketed, grouped) = epochs[False], epochs[True]
    assert len(grouped) == len(bucketed) == len(plain) == len(random) > 50
    fractions = np.ones(6) / 6  # the config's class weights
    for batch in grouped:
        composition = np.bincount(batch["_label_"], minlength=6)
        assert (np.abs(composition - BATCH * fractions) < 1).all()
        for mask, groups in (("pf_mask", ("pf_points", "pf_features", "pf_vectors")), ("sv_mask", ("sv_features",))):
            n = counts(batch, mask)
            length = batch[mask].shape[2]
            assert length == max(1, n.max()) <= 64 if mask == "pf_mask" else 5
            assert all(batch[g].shape[2] == length for g in groups)
            positions = np.arange(length)
            assert (batch[mask][:, 0, :] == (positions < n[:, None])).all()  # ones, then padding
            padded = positions >= n[:, None]
            assert all((batch[g].transpose(0, 2, 1)[padded] == 0).all() for g in groups)  # pad values
    assert all(b["pf_mask"].shape[2] == 64 and b["sv_mask"].shape[2] == 5 for b in random)

    def pair_ratio(batches):  # padded pair positions per jet over the jets' own mean of n²
        own = sum((counts(b, "pf_mask") ** 2).sum() for b in batches)
        return sum(BATCH * counts(b, "pf_mask").max() ** 2 for b in batches) / own

    assert pair_ratio(grouped) < 2.2 and pair_ratio(random) > 4  # random: even trimmed to its longest jet
    spread = [np.ptp(counts(b, "pf_mask")[b["_label_"] == 4]) for b in grouped]  # uds jets in one batch
    assert np.median(spread) <= 3
    lengths = [b["pf_mask"].shape[2] for b in grouped[:16]]  # the first chunk: handed out in random order
    assert sorted(lengths) != lengths and len(set(lengths)) > 8


def test_trimmed_tensors_are_the_padded_ones_cut(epochs, train_dataset):
    """Every jet of a bucketed batch equals the same jet read padded to the config's lengths, cut."""
    _, grouped = epochs[True]
    ds = JetDataset(train_dataset, CONFIG, batch_size=256, training=False, observers=True)
    padded = {}
    for batch in ds:
        for i, key in enumerate(keys(batch)):
            padded[key] = {g: batch[g][i].numpy() for g in ("pf_features", "pf_vectors", "pf_mask", "sv_features")}
    checked = 0
    for batch in grouped[:20]:
        for i, key in enumerate(keys(batch)):
            for group, full in padded[key].items():
                length = batch[group].shape[2]
                np.testing.assert_array_equal(batch[group][i], full[:, :length], err_msg=group)
                assert (full[:, length:] == 0).all()  # nothing but padding was cut
            checked += 1
    assert checked == 20 * BATCH


def test_the_delivered_jets_are_those_of_random_batches(train_dataset, epochs):
    """Only the batches' grouping changes: per epoch the same units are read and the same jets delivered, but
    for the few the shuffle buffers hold when the epoch ends (so every jet keeps its expected multiplicity)."""
    def delivered(batches):
        return collections.Counter(key for batch in batches for key in keys(batch))

    for epoch in (0, 1):
        if epoch:
            (random_ds, random), (bucketed_ds, grouped) = (batches_of(train_dataset, b, epoch) for b in (False, True))
        else:
            (random_ds, random), (bucketed_ds, grouped) = epochs[False], epochs[True]
        a, b = delivered(random), delivered(grouped)
        assert sum(a.values()) == sum(b.values()) == len(random) * BATCH
        assert bucketed_ds.last_stream.units_read == random_ds.last_stream.units_read
        assert sum(((a - b) + (b - a)).values()) < 0.1 * sum(a.values())  # ~a third of the rows held at the end


@pytest.mark.parametrize("world", [World(), World(1, 2)])
def test_resume_mid_chunk_gives_exactly_the_next_batch(train_dataset, world):
    _, reference = batches_of(train_dataset, True, world=world)
    plain = JetDataset(train_dataset, CONFIG, batch_size=BATCH, seed=4, jets_per_epoch=2400, window_jets=WINDOW,
                       world=world)
    for stop in (5, 21):
        interrupted, _ = batches_of(train_dataset, True, world=world, limit=stop)
        state = interrupted.state_dict()
        with pytest.raises(DatasetError, match="saved with bucket True, this dataset has False"):
            plain.load_state_dict(state)
        resumed = JetDataset(train_dataset, CONFIG, bucket=True, batch_size=BATCH, seed=4, jets_per_epoch=2400,
                             window_jets=WINDOW, observers=True, world=world)
        resumed.load_state_dict(state)
        rest = [{k: v.numpy() for k, v in b.items()} for b in resumed]
        assert len(rest) == len(reference) - stop == len(plain) - stop  # ranks: the same counts as random batches
        for a, b in zip(reference[stop:], rest, strict=True):
            for key in a:
                np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_dataloader_workers_hand_over_batches_of_every_length(train_dataset):
    """Two DataLoader workers (batches in shared memory, each its own length) give the batches of the two slots
    read in this process, in turn."""
    def make(world=None):
        return JetDataset(train_dataset, CONFIG, bucket=True, batch_size=BATCH, seed=5, jets_per_epoch=1200,
                          window_jets=WINDOW, world=world)

    loaded = [b["pf_features"].numpy().copy() for b in torch.utils.data.DataLoader(make(), batch_size=None,
                                                                                   num_workers=2)]
    slots = [[b["pf_features"].numpy() for b in make(World(0, 1, worker, 2))] for worker in (0, 1)]
    assert len(loaded) == len(make()) and len({b.shape[2] for b in loaded}) > 8
    for i, batch in enumerate(loaded):
        np.testing.assert_array_equal(batch, slots[i % 2][i // 2])


def test_bad_bucket_values_are_refused(train_dataset):
    import yaml

    from jetstore.config.weaver import training_config_from_dict

    for value in (-1, 1.5, "yes"):
        with pytest.raises(SchemaError, match="bucket must be"):
            JetDataset(train_dataset, CONFIG, batch_size=BATCH, bucket=value)
    options = yaml.safe_load(Path(CONFIG).read_text())
    options["inputs"], options["weights"] = {"jet": {"length": None, "vars": [["jet_pt", None]]}}, None
    with pytest.raises(SchemaError, match="bucket groups jets by multiplicity, but no input group has a length"):
        JetDataset(train_dataset, training_config_from_dict(options), batch_size=BATCH, bucket=True)


def _part(trim: bool):
    from weaver.nn.model.ParticleTransformer import ParticleTransformer

    torch.manual_seed(0)
    return ParticleTransformer(input_dim=10, num_classes=6, pair_input_dim=4, embed_dims=(32, 64, 32),
                               pair_embed_dims=(16, 16, 16), num_heads=2, num_layers=2, num_cls_layers=1,
                               fc_params=None, trim=trim)


def test_part_outputs_do_not_depend_on_the_padded_length(epochs):
    """weaver-core's ParT (its own trimming off) in evaluation: a jet's scores are the same in its bucketed batch,
    padded to 64, and alone at its own length (masks, pad values and the pair embedding exclude padding)."""
    _, grouped = epochs[True]
    model = _part(trim=False)
    with torch.no_grad():
        for batch in grouped[:4]:  # running statistics that are not the initial ones
            model(torch.from_numpy(batch["pf_features"]), v=torch.from_numpy(batch["pf_vectors"]),
                  mask=torch.from_numpy(batch["pf_mask"]))
        model.eval()
        for batch in grouped[4:8]:
            x, v, mask = (torch.from_numpy(batch[g]) for g in ("pf_features", "pf_vectors", "pf_mask"))
            scores = model(x, v=v, mask=mask)
            pad = lambda t: F.pad(t, (0, 64 - t.shape[2]))  # noqa: E731  pad values are 0 in this config
            np.testing.assert_allclose(model(pad(x), v=pad(v), mask=pad(mask)), scores, atol=2e-5)
            n = np.maximum(counts(batch, "pf_mask"), 1)
            alone = torch.cat([model(x[i:i + 1, :, :n[i]], v=v[i:i + 1, :, :n[i]], mask=mask[i:i + 1, :, :n[i]])
                               for i in range(len(n))])
            np.testing.assert_allclose(alone, scores, atol=2e-5)
            assert scores.abs().max() > 0.1


def _network(name: str, **options):
    from jetstore.config.weaver import load_training_config
    from jetstore.train.network import DataConfig

    spec = importlib.util.spec_from_file_location(name, REPO / "tests/fixtures/networks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model, info = module.get_model(DataConfig(load_training_config(CONFIG)), **options)
    return model, info


def test_networks_train_on_bucketed_batches(train_dataset):
    """The built-in ParT, particle_transformer's ParT file and ParticleNet (kNN of 16: bucket=17) take a step on
    bucketed batches, the shortest ones included."""
    from jetstore.train.model import Tagger

    names = ("pf_points", "pf_features", "pf_vectors", "pf_mask", "sv_features", "sv_mask")
    part, _ = _network("example_ParticleTransformer", embed_dims=[16, 32, 16], pair_embed_dims=[8, 8, 8],
                       num_heads=2, num_layers=1, num_cls_layers=1)
    particle_net, _ = _network("example_ParticleNet", conv_params=[(16, (16, 16, 16))], fc_params=[(16, 0.1)])
    tagger = Tagger(10, 6, size="tiny")
    models = {True: [(tagger, ("pf_features", "pf_vectors", "pf_mask")), (part, names)], 17: [(particle_net, names)]}
    for bucket, networks in models.items():
        _, batches = batches_of(train_dataset, bucket, limit=16)  # one chunk: its shortest batch too
        shortest = min(batches, key=lambda b: b["pf_mask"].shape[2])
        assert shortest["pf_mask"].shape[2] == (17 if bucket == 17 else max(1, counts(shortest, "pf_mask").max()))
        for model, inputs in networks:
            optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
            for batch in (shortest, batches[0]):
                output = model(*(torch.from_numpy(batch[k]) for k in inputs))
                logits = output[0] if isinstance(output, tuple) else output
                loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(batch["_label_"]))
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                assert torch.isfinite(loss)


def test_the_trainer_trains_on_bucketed_batches(train_dataset, tmp_path):
    """``jetstore train --bucket``: the training batches are bucketed (validation reads the held-out jets as
    before), and a few steps of the built-in ParT run on them."""
    from jetstore.train.cli import parse_options
    from jetstore.train.loop import build, train

    argv = ["--data", train_dataset, "--config", CONFIG, "--output", str(tmp_path / "run"), "--size", "tiny",
            "--steps", "3", "--batch-size", str(BATCH), "--jets-per-epoch", "400", "--jets-per-epoch-val", "128",
            "--no-progress", "--bucket"]
    options = parse_options(argv)
    assert options.bucket == 1 and parse_options([*argv, "17"]).bucket == 17 and parse_options(argv[:-1]).bucket == 0
    run = build(options, torch.device("cpu"))
    assert run.dataset.plan.options.bucket == 1 and not run.validation.plan.options.bucket
    summary = train(options)
    assert summary["status"] == "finished" and summary["step"] == 3 and np.isfinite(summary["loss"])


def _tagger(mode: str):
    from jetstore.train import batchnorm
    from jetstore.train.model import Tagger

    torch.manual_seed(0)
    tagger = Tagger(10, 6, size="tiny")
    batchnorm.apply(tagger.backbone, mode)
    return tagger


def _inputs(batch):
    return tuple(torch.from_numpy(batch[g]) for g in ("pf_features", "pf_vectors", "pf_mask"))


def test_masked_batchnorm_counts_real_particles_only(epochs):
    """``--batchnorm masked``: the input BatchNorm's statistics are those of the batch's real particles (a random
    batch is mostly padding: weaver-core's own statistics differ)."""
    batch = epochs[False][1][0]
    real = torch.from_numpy(batch["pf_features"]).permute(0, 2, 1)[torch.from_numpy(batch["pf_mask"])[:, 0] > 0]
    assert len(real) < 0.6 * batch["pf_mask"].size  # padding to count or not
    expected_mean, expected_var = 0.1 * real.mean(0), 0.9 + 0.1 * real.var(0)  # one step of momentum 0.1 from 0, 1
    for mode, same in (("masked", True), ("batch", False)):
        tagger = _tagger(mode)
        tagger(*_inputs(batch))
        norm = tagger.backbone.embed.input_bn
        close = torch.allclose(norm.running_mean, expected_mean, atol=1e-5) and torch.allclose(
            norm.running_var, expected_var, atol=1e-4)
        assert close == same, mode


def test_running_batchnorm_normalises_each_jet_alike_in_training_and_evaluation(epochs):
    """``--batchnorm running``: in training every BatchNorm normalises with its running statistics (learnt from
    real particles, from the first batch on), so a jet's normalised inputs do not depend on its batch; the
    weights and buffers are those of weaver-core's ParT (checkpoints, export) and evaluation is unchanged."""
    tagger, plain = _tagger("running"), _tagger("batch")
    norms = [m for m in tagger.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    assert len(norms) == 6 and all(getattr(m, "use_running", False) for m in norms)  # input + 5 of pair_embed
    outputs = []
    tagger.backbone.embed.input_bn.register_forward_hook(lambda _m, _i, out: outputs.append(out))
    short, long = epochs[True][1][0], epochs[True][1][-1]
    for batch in (short, long):
        tagger(*_inputs(batch))
    norm = tagger.backbone.embed.input_bn
    x, _, mask = _inputs(long)
    real = x.permute(0, 2, 1)[mask[:, 0] > 0]
    features = _inputs(short)[0].permute(0, 2, 1)[_inputs(short)[2][:, 0] > 0]
    # a cumulative average over the first batches, of their real particles
    torch.testing.assert_close(norm.running_mean, (features.mean(0) + real.mean(0)) / 2, atol=1e-5, rtol=0)
    expected = (x - norm.running_mean[None, :, None]) / torch.sqrt(norm.running_var[None, :, None] + norm.eps)
    torch.testing.assert_close(outputs[-1], expected * norm.weight[None, :, None] + norm.bias[None, :, None])
    plain.load_state_dict(tagger.state_dict())
    tagger.eval(), plain.eval()
    with torch.no_grad():
        torch.testing.assert_close(tagger(*_inputs(long))[0], plain(*_inputs(long))[0])


def test_batchnorm_modes_are_for_the_built_in_part(train_dataset, tmp_path):
    from jetstore.errors import JetstoreError
    from jetstore.train.cli import parse_options
    from jetstore.train.loop import build

    network = str(REPO / "tests/fixtures/networks/example_ParticleNet.py")
    argv = ["--data", train_dataset, "--config", CONFIG, "--output", str(tmp_path / "run"), "--no-progress"]
    assert parse_options(argv).batchnorm == "batch"
    with pytest.raises(JetstoreError, match="--batchnorm running sets the built-in ParT's BatchNorms"):
        build(parse_options([*argv, "-n", network, "--batchnorm", "running"]), torch.device("cpu"))
