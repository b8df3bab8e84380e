"""The sampler's corner cases found in review: data without stored stats, bare ``*_mask`` variables, one class rule
for labels, resume states from another world / batch / scheme / split or far past the epoch, third-party schemes,
and the Python API resolving relative paths as the command line does."""

from __future__ import annotations

import copy
import os
import time

import numpy as np
import pytest
import yaml

from jetstore import JetDataset
from jetstore.config.weaver import training_config_from_dict
from jetstore.dataset.dataset import Dataset
from jetstore.errors import DatasetError, SchemaError
from jetstore.model.table import class_index
from jetstore.registry import Registry
from jetstore.sampler import World
from jetstore.sampler.schemes import SCHEMES, sequential
from jetstore.sampler.schemes.base import Scheme
from jetstore.stats.result import read_stats, write_stats
from jetstore.stats.run import compute_stats
from tests.helpers import REPO, run_convert

OPTIONS = yaml.safe_load((REPO / "tests/fixtures/weaver_cms_ak4.yaml").read_text())


def config(**changes):
    options = copy.deepcopy(OPTIONS)
    options.update(changes)
    return training_config_from_dict(options)


@pytest.fixture(scope="module")
def plain(dask_client, sample_files, tmp_path_factory):
    """The bundled sample without any stored stats."""
    out = tmp_path_factory.mktemp("state") / "ds.zarr"
    assert run_convert(dask_client, sample_files, out).ok
    return Dataset.open(str(out))


def manual(**changes):
    """The fixture config with manual standardisation and no weights: it needs no stats."""
    options = copy.deepcopy(OPTIONS)
    options.pop("weights")
    options["preprocess"] = {"method": "manual"}
    options.update(changes)
    return training_config_from_dict(options)


@pytest.mark.slow
def test_without_stats_no_unlabelled_jet_is_delivered(plain):
    ds = JetDataset(plain.url, manual(selection="jet_pt > 20"), batch_size=256, seed=1, jets_per_epoch=2048)
    labels = np.concatenate([b["_label_"].numpy() for b in ds])
    assert len(labels) == 2048 and labels.min() >= 0  # label_undef / unlabelled jets are never sampled
    stored = plain.read_all(list(OPTIONS["labels"]["value"]), {})
    classes = class_index([stored.jets[c] for c in OPTIONS["labels"]["value"]])
    assert (classes < 0).any()  # there are such jets in the data


def test_a_bare_mask_variable_is_not_standardised(plain):
    inputs = copy.deepcopy(OPTIONS["inputs"])
    inputs["pf_mask"]["vars"] = ["pfcand_mask"]  # no [name, null]: weaver gives masks no standardisation
    parsed = manual(inputs=inputs, preprocess={"method": "auto"})
    assert "pfcand_mask" not in parsed.auto_variables and parsed.variables["pfcand_mask"].center is None
    mask = manual(inputs=inputs)
    ds = JetDataset(plain.url, mask, batch_size=128, seed=1, jets_per_epoch=512)
    batch = next(iter(ds))["pf_mask"].numpy()
    assert set(np.unique(batch)) <= {0.0, 1.0} and batch.max() == 1.0


def test_class_membership_is_one_rule():
    one_hot = [np.array([1, 0, 2, 0]), np.array([0, 1, 1, 0])]
    assert class_index(one_hot).tolist() == [0, 1, 1, -1]  # value 1, as weaver's WeightMaker (2 is no member)


def test_a_state_from_another_setup_is_refused_with_what_differs(plain):
    cfg = manual()
    ds = JetDataset(plain.url, cfg, batch_size=128, seed=2, jets_per_epoch=1024, world=World(0, 1))
    state = ds.state_dict(3)
    for other, what in (
        (JetDataset(plain.url, cfg, batch_size=128, seed=2, jets_per_epoch=1024, world=World(0, 2)), "world_size"),
        (JetDataset(plain.url, cfg, batch_size=64, seed=2, jets_per_epoch=1024, world=World(0, 1)), "batch_size"),
        (JetDataset(plain.url, cfg, batch_size=128, seed=2, world=World(0, 1), training=False), "scheme"),
        (JetDataset(plain.url, cfg, batch_size=128, seed=2, jets_per_epoch=1024, world=World(0, 1), split="train"),
         "split"),
        (JetDataset(plain.url, cfg, batch_size=128, seed=3, jets_per_epoch=1024, world=World(0, 1)), "seed"),
    ):
        with pytest.raises(DatasetError, match=f"saved with {what} "):
            other.load_state_dict(state)
    started = time.perf_counter()
    with pytest.raises(DatasetError, match=r"past the end of epoch 0 \(8 batches per rank\)"):
        ds.load_state_dict({**state, "batches": 10**6})
    assert time.perf_counter() - started < 1
    with pytest.raises(DatasetError, match=r"position .* is not valid"):
        ds.load_state_dict({**state, "batches": -1})
    ds.load_state_dict(state)  # its own state resumes
    assert len(list(ds)) == len(ds) - 3


def test_a_third_party_scheme_registers_and_owns_its_epoch(plain, monkeypatch):
    every_other = Scheme("every_other", sequential.plan, sequential.batches, sequential.epoch, weighted=False)
    registry = Registry("sampling scheme", "jetstore.schemes", (*(SCHEMES.get(n) for n in ("weighted", "sequential")),
                                                               every_other), SchemaError)
    monkeypatch.setattr("jetstore.sampler.schemes.SCHEMES", registry)
    ds = JetDataset(plain.url, manual(), batch_size=500, scheme="every_other")
    assert ds.scheme is every_other and sum(len(b["_label_"]) for b in ds) > 0
    with pytest.raises(SchemaError, match="jets_per_epoch does not apply"):
        JetDataset(plain.url, manual(), batch_size=500, scheme="every_other", jets_per_epoch=100)
    with pytest.raises(SchemaError, match="unknown sampling scheme 'nope'"):
        JetDataset(plain.url, manual(), batch_size=500, scheme="nope")


def test_the_api_resolves_relative_paths_for_the_workers(dask_client, plain, tmp_path, monkeypatch):
    monkeypatch.chdir(os.path.dirname(plain.url))
    relative = Dataset.open(os.path.basename(plain.url))
    assert relative.url == plain.url  # absolute: the Dask workers run elsewhere
    cfg = config()
    write_stats(relative, compute_stats(relative, cfg, dask_client, log=lambda _: None))
    assert read_stats(plain, cfg.hash).jets_read == plain.manifest.n_jets
