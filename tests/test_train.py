"""CPU smoke test of the ParT trainer: a few steps, a checkpoint, an exact resume, predictions."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from jetstore.train.checkpoint import load_checkpoint
from jetstore.train.evaluate import auc, class_pairs, performance, rejection
from jetstore.train.loop import TrainOptions, predict, train
from jetstore.train.model import Inputs

from jetstore.stats.result import write_stats
from jetstore.stats.run import compute_stats
from jetstore.store.dataset import Dataset
from tests.helpers import REPO, run_convert

CONFIG = str(REPO / "tests/fixtures/weaver_cms_ak4.yaml")


@pytest.fixture(scope="module")
def dataset_url(dask_client, sample_files, tmp_path_factory):
    from jetstore.config import load_training_config

    out = tmp_path_factory.mktemp("train") / "ds.zarr"
    assert run_convert(dask_client, sample_files, out).ok
    dataset = Dataset.open(str(out))
    write_stats(dataset, compute_stats(dataset, load_training_config(CONFIG), dask_client,
                                                        log=lambda _: None))
    return str(out)


def options(url, output, steps, **extra):
    return TrainOptions(data=url, config=CONFIG, output=str(output), steps=steps, batch_size=32, size="tiny",
                        workers=0, jets_per_epoch=400, checkpoint_every=2, log_every=1, inputs=Inputs(), **extra)


def test_train_checkpoint_resume_and_predict(dataset_url, tmp_path):
    straight = train(options(dataset_url, tmp_path / "straight", steps=6))
    assert set(straight) >= {"loss", "accuracy", "jets_per_s", "data_wait_fraction", "lr"}
    lines = [json.loads(line) for line in (tmp_path / "straight/metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [1, 2, 3, 4, 5, 6]
    assert all(0 <= line["data_wait_fraction"] <= 1 and line["jets_per_s"] > 0 for line in lines)
    assert list((tmp_path / "straight/tensorboard").iterdir())

    train(options(dataset_url, tmp_path / "resumed", steps=6, stop_at=4))  # "interrupted" after 4 steps
    first = load_checkpoint(str(tmp_path / "resumed/checkpoints"))
    assert first["step"] == 4 and first["sampler"]["batches"] == 4
    train(options(dataset_url, tmp_path / "resumed", steps=6))  # the rerun continues from step 4
    resumed = load_checkpoint(str(tmp_path / "resumed/checkpoints"))
    reference = load_checkpoint(str(tmp_path / "straight/checkpoints"))
    assert resumed["step"] == reference["step"] == 6
    for key, value in reference["model"].items():
        torch.testing.assert_close(resumed["model"][key], value, rtol=1e-5, atol=1e-6, msg=key)

    out = tmp_path / "scores.parquet"
    summary = predict(options(dataset_url, tmp_path / "straight", steps=6), str(out))
    table = pq.read_table(out)
    assert {"score_b", "score_uds", "label", "jet_pt", "event"} <= set(table.column_names)
    scores = np.stack([table.column(f"score_{c}").to_numpy() for c in ("b", "bb", "c", "cc", "uds", "g")], axis=1)
    np.testing.assert_allclose(scores.sum(axis=1), 1, rtol=1e-5)
    assert 0 <= summary["auc_b_vs_uds"] <= 1 and 0 <= summary["auc_b_vs_uds+g"] <= 1
    for signal in ("b", "bb", "c", "cc"):  # one ROC figure per signal class, PNG and PDF
        assert (tmp_path / f"scores.roc.{signal}.png").stat().st_size > 10_000
        assert (tmp_path / f"scores.roc.{signal}.pdf").exists()


def test_roc_arithmetic():
    signal, background = np.array([0.9, 0.8, 0.4]), np.array([0.1, 0.5, 0.3, 0.2])
    assert auc(signal, background) == pytest.approx(11 / 12)
    assert auc(np.array([1.0]), np.array([1.0])) == 0.5
    assert rejection(signal, background, 0.5) == float("inf")
    assert rejection(signal, background, 1.0) == pytest.approx(4 / 1)
    labels = np.array([0, 0, 1, 1])
    scores = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.2, 0.8]])
    assert performance(scores, labels, ["b", "uds"])["auc_b_vs_rest"] == 1.0


def test_class_pairs_follow_the_labels():
    ak4 = [p.name for p in class_pairs(["b", "bb", "c", "cc", "uds", "g", "undef"])]
    assert ak4[:3] == ["b_vs_uds", "b_vs_g", "b_vs_uds+g"] and len(ak4) == 12 and not any("undef" in n for n in ak4)
    jetclass = class_pairs(["QCD", "Hbb", "Hcc", "Hgg", "H4q", "Hqql", "Zqq", "Wqq", "Tbqq", "Tbl"])
    assert [p.name for p in jetclass][:2] == ["Hbb_vs_QCD", "Hcc_vs_QCD"] and len(jetclass) == 9
    assert all(p.background == ("QCD",) for p in jetclass)
    assert [p.name for p in class_pairs(["top", "w"])] == ["top_vs_rest", "w_vs_rest"]


def test_regression_targets_beside_the_classes(dask_client, dataset_url, tmp_path):
    """labels.targets adds float targets (here a stand-in 'response', jet_mass / jet_pt) trained in one loss."""
    import yaml

    from jetstore.config.weaver import training_config_from_dict

    options_dict = yaml.safe_load((REPO / "tests/fixtures/weaver_cms_ak4.yaml").read_text())
    options_dict["labels"]["targets"] = {"response": "jet_mass / jet_pt"}
    config_path = tmp_path / "regression.yaml"
    config_path.write_text(yaml.safe_dump(options_dict))
    dataset = Dataset.open(dataset_url)
    write_stats(dataset, compute_stats(dataset, training_config_from_dict(options_dict),
                                                        dask_client, log=lambda _: None))
    run = TrainOptions(data=dataset_url, config=str(config_path), output=str(tmp_path / "run"), steps=3,
                       batch_size=32, size="tiny", workers=0, jets_per_epoch=300, checkpoint_every=3)
    summary = train(run)
    assert np.isfinite(summary["loss"])
    out = tmp_path / "scores.parquet"
    predict(run, str(out))
    table = pq.read_table(out)
    assert {"pred_response", "response"} <= set(table.column_names)
    reference = dataset.read_all().jets
    assert set(np.round(table.column("response").to_numpy(), 5)) <= set(
        np.round((reference["jet_mass"] / reference["jet_pt"]).astype(np.float32), 5))


def test_checkpoints_on_s3(moto_server, s3_env):
    from jetstore.train.checkpoint import save_checkpoint

    s3_env(moto_server)
    moto_server.make_bucket("runs")
    state = {"step": 7, "model": {"w": torch.arange(4.0)}, "sampler": {"epoch": 1, "batches": 3, "seed": 1}}
    path = save_checkpoint("s3://runs/part/checkpoints", state, step=7)
    assert path.endswith("step-00000007.pt")
    loaded = load_checkpoint("s3://runs/part/checkpoints")
    assert loaded["step"] == 7 and torch.equal(loaded["model"]["w"], torch.arange(4.0))
    assert load_checkpoint("s3://runs/empty/checkpoints") is None
