"""CPU tests of the trainer (tiny ParT, a few steps): epochs with validation, best and last models, checkpoints
and an exact resume, predictions in weaver's layout (Parquet and ROOT), regression, the options."""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import uproot
from jetstore.train.checkpoint import BEST_MODEL, LAST_MODEL, load_checkpoint
from jetstore.train.cli import build_parser, parse_options
from jetstore.train.evaluate import auc, class_pairs, performance, regression_metrics, rejection
from jetstore.train.loop import TrainOptions, set_torch_threads, train
from jetstore.train.optim import schedule
from jetstore.train.predict import predict

from jetstore.store.dataset import Dataset
from tests.helpers import REPO, config_with_stats

CONFIG = str(REPO / "tests/fixtures/weaver_cms_ak4.yaml")
CLASSES = ("label_b", "label_bb", "label_c", "label_cc", "label_uds", "label_g")


def options(url, output, steps, **extra):
    values = {"size": "tiny", "jets_per_epoch_val": 256, **extra}
    return TrainOptions(data=url, config=CONFIG, output=str(output), steps=steps, batch_size=32, workers=0,
                        jets_per_epoch=400, checkpoint_every=2, log_every=1, progress=False, **values)


def test_train_validate_resume_and_predict(train_dataset, tmp_path):
    """Two epochs of 12 batches, cut at step 16: every epoch validated on the held-out jets, best and last
    model saved; interrupted at step 9 and resumed, the weights equal the uninterrupted run's."""
    straight = train(options(train_dataset, tmp_path / "straight", steps=16))
    assert straight["status"] == "finished" and straight["step"] == 16 and straight["epochs"] == 2
    assert {"loss", "accuracy", "jets_per_s", "data_wait_fraction", "lr", "val_loss", "val_accuracy",
            "val_auc_b_vs_uds"} <= set(straight)
    lines = [json.loads(line) for line in (tmp_path / "straight/metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == list(range(1, 17))
    assert all(0 <= line["data_wait_fraction"] <= 1 and line["jets_per_s"] > 0 for line in lines)
    epochs = [json.loads(line) for line in (tmp_path / "straight/epochs.jsonl").read_text().splitlines()]
    assert [(e["epoch"], e["step"]) for e in epochs] == [(0, 12), (1, 16)]
    assert all(0 < e["val_loss"] < 5 and 0 <= e["val_accuracy"] <= 1 and 0 <= e["val_auc_b_vs_uds"] <= 1
               for e in epochs)
    best = max(epochs, key=lambda e: e["val_accuracy"])  # weaver's rule: the best validation accuracy
    assert straight["best_epoch"] == best["epoch"] and straight["best_metric"] == best["val_accuracy"]
    assert epochs[0]["best"] and epochs[1]["best"] == (best["epoch"] == 1)
    checkpoints = tmp_path / "straight/checkpoints"
    last = torch.load(checkpoints / LAST_MODEL, weights_only=True)
    reference = load_checkpoint(str(checkpoints))
    assert reference["step"] == 16 and reference["sampler"] == {"epoch": 2, "batches": 0, "seed": 1}
    for key, value in reference["model"].items():
        assert torch.equal(last[key], value), key
    assert (checkpoints / BEST_MODEL).exists() and list((tmp_path / "straight/tensorboard").iterdir())
    run = json.loads((tmp_path / "straight/run.json").read_text())["options"]
    assert run["size"] == "tiny" and run["data"] == [train_dataset] and "predict" not in run

    stopped = train(options(train_dataset, tmp_path / "resumed", steps=16, stop_at=9))  # "interrupted"
    assert stopped["step"] == 9 and "rerun to resume" in stopped["status"]
    first = load_checkpoint(str(tmp_path / "resumed/checkpoints"))
    assert first["step"] == 9 and first["sampler"] == {"epoch": 0, "batches": 9, "seed": 1}
    resumed_summary = train(options(train_dataset, tmp_path / "resumed", steps=16))  # continues from step 9
    resumed = load_checkpoint(str(tmp_path / "resumed/checkpoints"))
    assert resumed["step"] == 16
    for key, value in reference["model"].items():
        torch.testing.assert_close(resumed["model"][key], value, rtol=1e-5, atol=1e-6, msg=key)
    assert resumed_summary["val_loss"] == pytest.approx(straight["val_loss"], rel=1e-4)
    assert resumed_summary["train_loss"] == pytest.approx(straight["train_loss"], rel=1e-4)  # the epoch's sums

    again = train(options(train_dataset, tmp_path / "straight", steps=16))  # a finished run: its summary
    assert again["status"].startswith("finished earlier (step 16 of 16)")
    assert again["best_epoch"] == straight["best_epoch"] and again["val_loss"] == straight["val_loss"]

    # --predict reads the run's options back: only the output is given
    predicted = parse_options(["--output", str(tmp_path / "straight"), "--predict", str(tmp_path / "p.parquet")])
    assert predicted.size == "tiny" and predicted.data == (train_dataset,) and predicted.batch_size == 32
    summary = predict(predicted, str(tmp_path / "p.parquet"))
    assert summary["model"].endswith(BEST_MODEL) and 150 < summary["jets"] < 400  # ~10% of 2,500, selected
    table = pq.read_table(tmp_path / "p.parquet")
    assert {*(f"score_{c}" for c in CLASSES), *CLASSES, "_label_", "jet_pt", "event", "sample"} <= set(
        table.column_names)
    scores = np.stack([table.column(f"score_{c}").to_numpy() for c in CLASSES], axis=1)
    np.testing.assert_allclose(scores.sum(axis=1), 1, rtol=1e-5)
    labels = table.column("_label_").to_numpy()
    assert all((table.column(c).to_numpy() == (labels == i)).all() for i, c in enumerate(CLASSES))
    assert set(table.column("sample").to_pylist()) == {"sample"}
    assert summary["auc_b_vs_uds"] == pytest.approx(performance(scores, labels, [c[6:] for c in CLASSES])[
        "auc_b_vs_uds"])
    assert summary["per_sample"]["sample"]["jets"] == summary["jets"]
    assert (tmp_path / "p.samples.csv").read_text().startswith("sample,jets,auc_b_vs_rest")
    for signal in ("b", "bb", "c", "cc"):  # one ROC figure per signal class, PNG and PDF
        assert (tmp_path / f"p.roc.{signal}.png").stat().st_size > 10_000
        assert (tmp_path / f"p.roc.{signal}.pdf").exists()

    root = predict(predicted, str(tmp_path / "p.root"))
    with uproot.open(tmp_path / "p.root") as handle:
        events = handle["Events"].arrays(library="np")
        assert str(handle["sample_names"]) == "sample"
    np.testing.assert_array_equal(events["score_label_b"], table.column("score_label_b").to_numpy())
    assert events["label_b"].dtype == bool and events["_sample_"].tolist() == [0] * root["jets"]


def test_a_checkpoint_of_another_run_is_refused(train_dataset, tmp_path):
    from jetstore.errors import JetstoreError

    train(options(train_dataset, tmp_path, steps=1))
    with pytest.raises(JetstoreError, match=r"another run: now --size 'small' \(this run: 'tiny'\)"):
        train(options(train_dataset, tmp_path, steps=2, size="small"))


def test_fine_tuning_keeps_the_fitting_tensors(train_dataset, tmp_path, dask_client):
    """--load-model-weights: a model with fewer classes keeps the backbone, starts its head afresh."""
    train(options(train_dataset, tmp_path / "pre", steps=1))

    def two_classes(data):
        data["labels"]["value"] = ["label_b", "label_uds"]
        data["weights"].update(reweight_classes=["label_b", "label_uds"], class_weights=[1, 1])

    config = config_with_stats(train_dataset, tmp_path / "two.yaml", dask_client, two_classes)
    pre = torch.load(tmp_path / "pre/checkpoints" / BEST_MODEL, weights_only=True)
    run = TrainOptions(data=train_dataset, config=config, output=str(tmp_path / "tuned"), steps=1,
                       batch_size=32, size="tiny", jets_per_epoch=64, progress=False, lr=1e-12, holdout=0,
                       load_model_weights=str(tmp_path / "pre/checkpoints" / BEST_MODEL))
    train(run)
    tuned = torch.load(tmp_path / "tuned/checkpoints" / LAST_MODEL, weights_only=True)
    assert tuned["classifier.weight"].shape == (2, 32) and pre["classifier.weight"].shape == (6, 32)
    key = "backbone.embed.embed.1.weight"
    torch.testing.assert_close(tuned[key], pre[key], rtol=0, atol=1e-6)  # lr 1e-12: still the loaded weights


def test_pure_regression_on_custom_labels(train_dataset, tmp_path, dask_client):
    """weaver's labels.type: custom (its regression mode): loss, bias and resolution per epoch; predictions with
    the truth beside."""
    config = config_with_stats(train_dataset, tmp_path / "regression.yaml", dask_client, lambda data: data.update(
        labels={"type": "custom", "value": {"response": "jet_mass / jet_pt"}}))
    run = TrainOptions(data=train_dataset, config=config, output=str(tmp_path / "run"), steps=4,
                       batch_size=32, size="tiny", jets_per_epoch=64, progress=False, regression_mode=True)
    summary = train(run)
    assert summary["epochs"] == 2 and np.isfinite(summary["val_loss"])
    assert {"val_response_bias", "val_response_resolution", "val_response_resolution_68"} <= set(summary)
    assert summary["best_metric"] == min(json.loads(line)["val_loss"] for line in
                                         (tmp_path / "run/epochs.jsonl").read_text().splitlines())
    out = tmp_path / "reg.parquet"
    result = predict(run, str(out))
    table = pq.read_table(out)
    assert {"pred_response", "response", "jet_pt", "sample"} <= set(table.column_names)
    assert not any(name.startswith("score_") for name in table.column_names)
    residual = table.column("pred_response").to_numpy() - table.column("response").to_numpy()
    assert result["response_bias"] == pytest.approx(residual.mean(), rel=1e-4)
    assert result["response_resolution"] == pytest.approx(residual.std(), rel=1e-4)
    reference = Dataset.open(train_dataset).read_all().jets
    assert set(np.round(table.column("response").to_numpy(), 5)) <= set(
        np.round((reference["jet_mass"] / reference["jet_pt"]).astype(np.float32), 5))


def test_regression_targets_beside_the_classes(dask_client, train_dataset, tmp_path):
    """labels.targets adds float targets (here a stand-in 'response', jet_mass / jet_pt) trained in one loss."""
    config_path = config_with_stats(train_dataset, tmp_path / "regression.yaml", dask_client,
                                    lambda data: data["labels"].update(targets={"response": "jet_mass / jet_pt"}))
    run = TrainOptions(data=train_dataset, config=config_path, output=str(tmp_path / "run"), steps=3,
                       batch_size=32, size="tiny", jets_per_epoch=300, progress=False)
    summary = train(run)
    assert np.isfinite(summary["loss"]) and {"val_accuracy", "val_response_resolution"} <= set(summary)
    out = tmp_path / "scores.parquet"
    predict(run, str(out))
    table = pq.read_table(out)
    assert {"pred_response", "response", "score_label_b"} <= set(table.column_names)


def test_roc_arithmetic():
    signal, background = np.array([0.9, 0.8, 0.4]), np.array([0.1, 0.5, 0.3, 0.2])
    assert auc(signal, background) == pytest.approx(11 / 12)
    assert auc(np.array([1.0]), np.array([1.0])) == 0.5
    assert rejection(signal, background, 0.5) == float("inf")
    assert rejection(signal, background, 1.0) == pytest.approx(4 / 1)
    labels = np.array([0, 0, 1, 1])
    scores = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.2, 0.8]])
    assert performance(scores, labels, ["b", "uds"])["auc_b_vs_rest"] == 1.0
    residuals = np.array([[-1.0], [0.0], [1.0], [2.0]])
    found = regression_metrics(residuals, ["r"])
    assert found["r_bias"] == 0.5 and found["r_resolution"] == pytest.approx(np.sqrt(1.25))
    assert found["r_resolution_68"] == pytest.approx((np.percentile(residuals, 84) - np.percentile(residuals, 16)) / 2)


def test_class_pairs_follow_the_labels():
    ak4 = [p.name for p in class_pairs(["b", "bb", "c", "cc", "uds", "g", "undef"])]
    assert ak4[:3] == ["b_vs_uds", "b_vs_g", "b_vs_uds+g"] and len(ak4) == 12 and not any("undef" in n for n in ak4)
    jetclass = class_pairs(["QCD", "Hbb", "Hcc", "Hgg", "H4q", "Hqql", "Zqq", "Wqq", "Tbqq", "Tbl"])
    assert [p.name for p in jetclass][:2] == ["Hbb_vs_QCD", "Hcc_vs_QCD"] and len(jetclass) == 9
    assert all(p.background == ("QCD",) for p in jetclass)
    assert [p.name for p in class_pairs(["top", "w"])] == ["top_vs_rest", "w_vs_rest"]


@pytest.mark.parametrize("name", ["flat+decay", "cosine", "one-cycle", "none"])
def test_schedules(name):
    factors = [schedule(name, 100, warmup=10)(step) for step in range(100)]
    if name == "one-cycle":  # its own warm-up: from 1/25 up to the peak at step 10, then down to 1/25e4
        assert factors[0] == pytest.approx(1 / 25) and max(factors) == factors[10] == 1.0
        assert factors[-1] < 1e-3
        return
    assert factors[:10] == pytest.approx([(s + 1) / 10 for s in range(10)])  # linear warm-up
    if name == "flat+decay":
        assert factors[10:70] == [1.0] * 60 and factors[99] == pytest.approx(math.exp(math.log(0.01) * 29 / 30))
    elif name == "cosine":
        assert factors[10] == 1.0 and factors[55] == pytest.approx(0.5, abs=0.02) and factors[99] < 0.01
    else:
        assert factors[10:] == [1.0] * 90
    assert schedule("flat+decay", 100, warmup=0.05)(4) == pytest.approx(1.0)  # a fraction: 5 steps


def test_the_command_line_is_the_options():
    """Every TrainOptions field is an option, with its default shown; the parsed options are TrainOptions."""
    import dataclasses

    parser = build_parser()
    flags = {a.dest: a for a in parser._actions}
    assert {f.name for f in dataclasses.fields(TrainOptions)} <= set(flags)
    text = " ".join(parser.format_help().split())
    assert "(default: ranger)" in text and "(default: 256)" in text and "(default: flat+decay)" in text
    parsed = parse_options(["--data", "a.zarr", "--data", "b:b.zarr", "-n", "net.py", "-o", "num_layers", "2",
                            "-o", "embed_dims", "[8, 8]", "--start-lr", "0.005", "--no-progress", "--amp", "fp16"])
    assert parsed.data == ("a.zarr", "b:b.zarr") and parsed.data_url == ["a.zarr", "b:b.zarr"]
    assert parsed.network_options == (("num_layers", "2"), ("embed_dims", "[8, 8]"))
    assert parsed.lr == 0.005 and parsed.progress is False and parsed.amp == "fp16" and parsed.num_epochs == 20
    assert TrainOptions(data="one.zarr").data_url == "one.zarr"  # one dataset: its URL as it is


def test_torch_threads_leave_the_sampler_its_cores(monkeypatch):
    import os

    monkeypatch.setattr(os, "sched_getaffinity", lambda _: set(range(8)))
    before = torch.get_num_threads()
    try:
        assert set_torch_threads(TrainOptions(threads=2)) == 6 == torch.get_num_threads()
        assert set_torch_threads(TrainOptions(threads=2, workers=3)) == 2
        assert set_torch_threads(TrainOptions(threads=8)) == 1
        assert set_torch_threads(TrainOptions(threads=2, torch_threads=3)) == 3
    finally:
        torch.set_num_threads(before)


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
