"""CPU tests of the trainer (tiny ParT or a small deterministic network file, a few steps): epochs with
validation, best and last models, checkpoints and an exact resume, gradient accumulation equal to the big batch,
resumes that refuse or apply changed options, predictions in weaver's layout (Parquet and ROOT) standardised as
trained, regression, the options checked when parsed, run folders that run no code."""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import math
import re
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import uproot
import yaml

from jetstore.cli import main
from jetstore.config import load_training_config
from jetstore.dataset.dataset import Dataset
from jetstore.errors import JetstoreError
from jetstore.train.checkpoint import BEST_MODEL, LAST_MODEL, load_checkpoint
from jetstore.train.cli import build_parser, parse_options
from jetstore.train.evaluate import auc, auc_error, class_pairs, performance, regression_metrics, rejection
from jetstore.train.loop import TrainOptions, build, set_torch_threads, train
from jetstore.train.optim import make_optimizer, schedule
from jetstore.train.predict import predict
from tests.helpers import REPO, config_with_stats

CONFIG = str(REPO / "tests/fixtures/weaver_cms_ak4.yaml")
CLASSES = ("label_b", "label_bb", "label_c", "label_cc", "label_uds", "label_g")
DEEP_SETS = str(REPO / "tests/fixtures/networks/deep_sets.py")


def options(url, output, steps, **extra):
    values = {"size": "tiny", "jets_per_epoch_val": 256, "batch_size": 32, "jets_per_epoch": 400, "workers": 0,
              **extra}
    return TrainOptions(data=url, config=CONFIG, output=str(output), steps=steps, checkpoint_every=2, log_every=1,
                        progress=False, **values)


@pytest.mark.slow
def test_train_validate_resume_and_predict(train_dataset, tmp_path, monkeypatch):
    """Two epochs of 6 batches, cut at step 8: every epoch validated on the held-out jets, best and last
    model saved; interrupted at step 5 and resumed, the weights equal the uninterrupted run's."""
    straight = train(options(train_dataset, tmp_path / "straight", steps=8, jets_per_epoch=200))
    assert straight["status"] == "finished" and straight["step"] == 8 and straight["epochs"] == 2
    assert {"loss", "accuracy", "jets_per_s", "data_wait_fraction", "lr", "val_loss", "val_accuracy",
            "val_auc_b_vs_uds"} <= set(straight)
    lines = [json.loads(line) for line in (tmp_path / "straight/metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == list(range(1, 9))
    assert all(0 <= line["data_wait_fraction"] <= 1 and line["jets_per_s"] > 0 for line in lines)
    epochs = [json.loads(line) for line in (tmp_path / "straight/epochs.jsonl").read_text().splitlines()]
    assert [(e["epoch"], e["step"]) for e in epochs] == [(0, 6), (1, 8)]
    assert all(0 < e["val_loss"] < 5 and 0 <= e["val_accuracy"] <= 1 and 0 <= e["val_auc_b_vs_uds"] <= 1
               for e in epochs)
    best = max(epochs, key=lambda e: e["val_accuracy"])  # weaver's rule: the best validation accuracy
    assert straight["best_epoch"] == best["epoch"] and straight["best_metric"] == best["val_accuracy"]
    assert epochs[0]["best"] and epochs[1]["best"] == (best["epoch"] == 1)
    checkpoints = tmp_path / "straight/checkpoints"
    last = torch.load(checkpoints / LAST_MODEL, weights_only=True)
    reference = load_checkpoint(str(checkpoints))
    position = {"world_size": 1, "slots": 1, "offset": 0, "seed": 1}
    assert reference["step"] == 8 and reference["sampler"] == {"epoch": 2, "batches": 0, **position}
    for key, value in reference["model"].items():
        assert torch.equal(last[key], value), key
    assert (checkpoints / BEST_MODEL).exists() and list((tmp_path / "straight/tensorboard").iterdir())
    run = json.loads((tmp_path / "straight/run.json").read_text())["options"]
    assert run["size"] == "tiny" and run["data"] == [train_dataset] and "predict" not in run
    assert run["output"] == str((tmp_path / "straight").absolute())  # locations absolute: readable from anywhere

    stopped = train(options(train_dataset, tmp_path / "resumed", steps=8, stop_at=5, jets_per_epoch=200))
    assert stopped["step"] == 5 and "rerun to resume" in stopped["status"]  # "interrupted"
    first = load_checkpoint(str(tmp_path / "resumed/checkpoints"))
    assert first["step"] == 5 and first["sampler"] == {"epoch": 0, "batches": 5, **position}
    with open(tmp_path / "resumed/metrics.jsonl", "a") as handle:  # what a run killed after step 5 had logged
        handle.write(json.dumps({"step": 6, "loss": 9.9}) + "\n" + '{"step": 7, "lo')
    resumed_summary = train(options(train_dataset, tmp_path / "resumed", steps=8, jets_per_epoch=200))
    steps = [json.loads(line)["step"] for line in (tmp_path / "resumed/metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 9))  # one line per step: the killed run's lines after its checkpoint dropped
    resumed = load_checkpoint(str(tmp_path / "resumed/checkpoints"))
    assert resumed["step"] == 8
    for key, value in reference["model"].items():
        torch.testing.assert_close(resumed["model"][key], value, rtol=1e-5, atol=1e-6, msg=key)
    assert resumed_summary["val_loss"] == pytest.approx(straight["val_loss"], rel=1e-4)
    assert resumed_summary["train_loss"] == pytest.approx(straight["train_loss"], rel=1e-4)  # the epoch's sums

    again = train(options(train_dataset, tmp_path / "straight", steps=8, jets_per_epoch=200))  # finished: summary
    assert again["status"].startswith("finished earlier (step 8 of 8)")
    assert again["best_epoch"] == straight["best_epoch"] and again["val_loss"] == straight["val_loss"]

    # --predict reads the run's options back: only the output is given, from another folder
    monkeypatch.chdir(tmp_path / "resumed")
    predicted = parse_options(["--output", str(tmp_path / "straight"), "--predict", str(tmp_path / "p.parquet")])
    assert predicted.size == "tiny" and predicted.data == (train_dataset,) and predicted.batch_size == 32
    summary = predict(predicted, str(tmp_path / "p.parquet"))
    assert summary["model"].endswith(BEST_MODEL) and 150 < summary["jets"] < 400  # ~10% of 2,500, selected
    table = pq.read_table(tmp_path / "p.parquet")
    assert {*(f"score_{c}" for c in CLASSES), *CLASSES, "_label_", "jet_pt", "event", "ijet", "sample"} <= set(
        table.column_names)
    scores = np.stack([table.column(f"score_{c}").to_numpy() for c in CLASSES], axis=1)
    np.testing.assert_allclose(scores.sum(axis=1), 1, rtol=1e-5)
    labels = table.column("_label_").to_numpy()
    assert all((table.column(c).to_numpy() == (labels == i)).all() for i, c in enumerate(CLASSES))
    assert set(table.column("sample").to_pylist()) == {"sample"}
    assert summary["auc_b_vs_uds"] == pytest.approx(performance(scores, labels, [c[6:] for c in CLASSES])[
        "auc_b_vs_uds"])
    assert summary["per_sample"]["sample"]["jets"] == summary["jets"]
    assert [e["val_jets"] for e in epochs] == [summary["jets"]] * 2  # each held-out jet once per validation
    assert (tmp_path / "p.samples.csv").read_text().startswith("sample,jets,auc_b_vs_rest")
    for signal in ("b", "bb", "c", "cc"):  # one ROC figure per signal class, PNG and PDF
        assert (tmp_path / f"p.roc.{signal}.png").stat().st_size > 10_000
        assert (tmp_path / f"p.roc.{signal}.pdf").exists()

    root = predict(predicted, str(tmp_path / "p.root"), plots=False)
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
    predict(run, str(out), plots=False)
    table = pq.read_table(out)
    assert {"pred_response", "response", "score_label_b"} <= set(table.column_names)


def test_roc_arithmetic():
    signal, background = np.array([0.9, 0.8, 0.4]), np.array([0.1, 0.5, 0.3, 0.2])
    assert auc(signal, background) == pytest.approx(11 / 12)
    assert auc(np.array([1.0]), np.array([1.0])) == 0.5
    assert rejection(signal, background, 0.5) == (float("inf"), pytest.approx(float("nan"), nan_ok=True), 0)
    assert rejection(signal, background, 1.0)[::2] == (pytest.approx(4 / 1), 1)  # one background jet passes
    # weights count as repeated jets
    assert auc(signal, background, np.array([1, 1, 2.0]), np.ones(4)) == pytest.approx(
        auc(np.append(signal, 0.4), background))
    rng = np.random.default_rng(1)  # the AUC's uncertainty is its spread over repeated samples of 150 + 100 jets
    spread = np.std([auc(rng.normal(1.2, 1, 150), rng.normal(0, 1, 100)) for _ in range(200)])
    assert auc_error(0.8, 150, 100) == pytest.approx(spread, rel=0.15)
    labels = np.array([0, 0, 1, 1])
    scores = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.2, 0.8]])
    found = performance(scores, labels, ["b", "uds"])
    assert found["auc_b_vs_uds"] == 1.0 and found["auc_b_vs_rest"] == 1.0
    assert found["low_statistics"] == [f"rejection_b_vs_uds_at_{e} (0 background jets pass)" for e in (30, 50, 70)]
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
    if name == "one-cycle":  # its own warm-up: from 1/25 up to the peak after 10 steps, then down to 1/25e4
        assert factors[0] == pytest.approx(1 / 25) and max(factors) == factors[9] == 1.0
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
    assert parsed.read_factor is None  # the sampler's default
    assert parse_options(["--read-factor", "auto"]).read_factor == "auto"
    assert parse_options(["--read-factor", "2.5"]).read_factor == 2.5


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


def test_accumulation_is_the_big_batch_across_epochs_and_resumes(train_dataset, tmp_path):
    """--grad-accum 3 on epochs of 7 batches: 2 steps an epoch, the 7th batch left out (a 3× batch would not have
    it either), nothing carried into the next epoch. The weights equal those of one 3× batch per step computed
    here from the same batches, also after a stop mid-epoch (step 3) and a resume."""
    run_options = options(train_dataset, tmp_path / "run", steps=6, network_config=DEEP_SETS, grad_accum=3,
                          jets_per_epoch=7 * 32, optimizer="adam", lr_scheduler="none", lr=0.01, holdout=0.1)
    reference = build(run_options, torch.device("cpu"))  # the same initial weights and batches as train()
    model, objective = reference.model, reference.objective
    optimizer = make_optimizer("adam", model, 0.01, 0.0)
    for epoch in range(3):
        reference.dataset.set_epoch(epoch)
        batches = list(itertools.islice(iter(reference.dataset), 6))
        for first in (0, 3):
            big = {k: torch.cat([b[k] for b in batches[first:first + 3]]) for k in batches[0]}
            optimizer.zero_grad()
            objective.loss(*reference.network(model, big), big).backward()
            optimizer.step()
    expected = model.state_dict()

    assert train(run_options)["step"] == 6
    stopped = dataclasses.replace(run_options, output=str(tmp_path / "resumed"), stop_at=3)
    assert train(stopped)["step"] == 3
    train(dataclasses.replace(stopped, stop_at=None))
    for folder in ("run", "resumed"):
        weights = load_checkpoint(str(tmp_path / folder / "checkpoints"))["model"]
        for key, value in expected.items():
            # float32 sums in another order (3 scaled losses against one), amplified by Adam where a gradient is
            # near 0: a few 1e-6; a batch too many or too few moves a weight by ~lr = 1e-2
            torch.testing.assert_close(weights[key], value, rtol=1e-4, atol=1e-5, msg=f"{folder}: {key}")


def test_persistent_workers_follow_the_epochs_and_may_change_on_resume(train_dataset, tmp_path, caplog):
    """--workers 2, kept for the whole run: a run stopped in its second epoch and resumed with --workers 0 (the
    epoch finished on the streams it began with, re-dealt to one loading slot) ends with the weights of the
    uninterrupted run (whose workers had to learn of the second epoch through shared memory)."""
    run_options = options(train_dataset, tmp_path / "straight", steps=8, network_config=DEEP_SETS, workers=2,
                          threads=1, jets_per_epoch=4 * 32, optimizer="adam", holdout=0.0)
    train(run_options)
    stopped = dataclasses.replace(run_options, output=str(tmp_path / "resumed"), stop_at=6)
    train(stopped)
    caplog.set_level(logging.INFO, "jetstore.train")
    train(dataclasses.replace(stopped, stop_at=None, workers=0))
    assert "resuming with 1 rank(s) × 1 loading slot(s) an epoch begun with 1 × 2: its 2 batches left" in caplog.text
    expected = load_checkpoint(str(tmp_path / "straight/checkpoints"))["model"]
    resumed = load_checkpoint(str(tmp_path / "resumed/checkpoints"))["model"]
    for key, value in expected.items():
        assert torch.equal(resumed[key], value), key


def test_resume_refuses_other_data_and_applies_new_rates(train_dataset, tmp_path, dask_client, capsys, caplog):
    """Resume is keyed by the config's content, not its path: class_weights edited in place, or a class removed,
    is refused in one line naming the key; a changed --lr is applied from the resumed step and said once."""
    config = config_with_stats(train_dataset, tmp_path / "config.yaml", dask_client, lambda data: None)
    first = dataclasses.replace(options(train_dataset, tmp_path / "run", steps=4, stop_at=2), config=config)
    train(first)
    original = Path(config).read_text()
    data = yaml.safe_load(original)
    data["weights"]["class_weights"] = [1, 1, 1, 1, 2, 1]
    fewer = yaml.safe_load(original)
    fewer["labels"]["value"] = fewer["labels"]["value"][:-1]
    command = ["train", "--data", train_dataset, "--config", config, "--output", str(tmp_path / "run"), "--size",
               "tiny", "--steps", "4", "--batch-size", "32", "--jets-per-epoch", "400", "--jets-per-epoch-val", "256"]
    for edited, key in ((data, "weights.class_weights"), (fewer, "labels.value")):
        Path(config).write_text(yaml.safe_dump(edited, sort_keys=False))
        capsys.readouterr()
        assert main(command) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"another content of --config {config} (changed: {key})" in err, err
    moved = tmp_path / "moved.yaml"  # the same content elsewhere: the same run
    moved.write_text(original)
    caplog.set_level(logging.INFO, "jetstore.train")
    summary = train(dataclasses.replace(first, config=str(moved), stop_at=None, lr=0.01))
    assert summary["step"] == 4
    notices = [r.getMessage() for r in caplog.records if "changed options" in r.getMessage()]
    assert notices == ["resuming at step 2 with changed options: --lr 0.01 (was 0.001)"]
    assert any(re.fullmatch(r"epochs of 384 sampled jets \(12 batches per rank\): --jets-per-epoch 400; the "
                            r"natural weighted epoch \(.*\) holds \d+ jets", r.getMessage()) for r in caplog.records)
    rates = [json.loads(line)["lr"] for line in (tmp_path / "run/metrics.jsonl").read_text().splitlines()]
    assert rates[1] == pytest.approx(0.001 * schedule("flat+decay", 4)(1))
    assert rates[2] == pytest.approx(0.01 * schedule("flat+decay", 4)(2))  # the new rate from the resumed step


def test_predictions_use_the_standardisation_trained_with(train_dataset, tmp_path):
    """Scores on another dataset are the same whether or not `jetstore stats` ran on it (here: stats of the same
    config with other values, as another dataset's); --predict on a run that held out nothing is refused (its
    jets are the training jets)."""
    import shutil

    from jetstore.dataset.collection import Collection
    from jetstore.stats.result import read_stats, write_stats

    run_options = options(train_dataset, tmp_path / "run", steps=2, holdout=0.0, jets_per_epoch_val=None)
    train(run_options)
    with pytest.raises(JetstoreError, match=r"trained on every jet of --data .--holdout 0."):
        predict(run_options, str(tmp_path / "p.parquet"))
    other = tmp_path / "other.zarr"
    shutil.copytree(train_dataset, other)
    on_other = dataclasses.replace(run_options, predict_data=str(other))
    before = predict(on_other, str(tmp_path / "before.parquet"), max_jets=200, plots=False)
    stats = read_stats(Collection.open(str(other)), load_training_config(CONFIG).hash)
    shifted = {k: dataclasses.replace(v, center=v.center + 1.0, scale=v.scale * 2) for k, v in stats.variables.items()}
    write_stats(Dataset.open(str(other)), dataclasses.replace(stats, variables=shifted))
    after = predict(on_other, str(tmp_path / "after.parquet"), max_jets=200, plots=False)
    assert before["jets"] == after["jets"] >= 200
    np.testing.assert_array_equal(pq.read_table(tmp_path / "before.parquet").column("score_label_b").to_numpy(),
                                  pq.read_table(tmp_path / "after.parquet").column("score_label_b").to_numpy())


def test_training_without_a_config_is_one_line(train_dataset, tmp_path, capsys):
    assert main(["train", "--data", train_dataset, "--output", str(tmp_path / "run"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--config: give the weaver-core data-config file" in err, err


def test_a_run_folder_runs_no_code(train_dataset, tmp_path, capsys):
    """A run.json naming a planted network file: --predict and --export-onnx refuse to import it unless -n names
    it again or --trust-run is given; the message names run.json and the file. --export-onnx says what it wrote."""
    planted = tmp_path / "net.py"
    marker = tmp_path / "ran"
    planted.write_text(f"open({str(marker)!r}, 'w').write('x')\n" + Path(DEEP_SETS).read_text())
    run = tmp_path / "run"
    assert main(["train", "--data", train_dataset, "--config", CONFIG, "--output", str(run), "-n", str(planted),
                 "--steps", "1", "--batch-size", "32", "--jets-per-epoch", "64", "--no-progress"]) == 0
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == len(set(lines)) == 3 and lines[2].startswith("epoch 0 (step 1): "), lines  # each once
    marker.unlink()
    assert main(["train", "--output", str(run), "--predict", str(tmp_path / "p.parquet")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{run}/run.json names the network file {planted}" in err, err
    assert not marker.exists() and not (tmp_path / "p.parquet").exists()
    assert main(["train", "--output", str(run), "--export-onnx", str(tmp_path / "m.onnx")]) == 2
    assert not marker.exists() and not (tmp_path / "m.onnx").exists()
    assert main(["train", "--output", str(run), "--export-onnx", str(tmp_path / "m.onnx"), "--trust-run"]) == 0
    assert marker.exists() and (tmp_path / "m.onnx").exists()
    marker.unlink()
    assert main(["train", "--output", str(run), "--export-onnx", str(tmp_path / "n.onnx"), "-n", str(planted)]) == 0
    assert marker.exists() and f"wrote {tmp_path}/n.onnx (" in capsys.readouterr().err


@pytest.mark.parametrize(("arguments", "message"), [
    (["--lr", "nan"], "--lr nan: must be a finite number > 0"),
    (["--lr", "-1"], "--lr -1.0: must be a finite number > 0"),
    (["--grad-accum", "0"], "--grad-accum 0: must be an integer ≥ 1"),
    (["--num-epochs", "0"], "--num-epochs 0: must be an integer ≥ 1"),
    (["--steps", "-1"], "--steps -1: must be an integer ≥ 1"),
    (["--holdout", "5"], "--holdout 5.0: must be a finite number ≥ 0 and < 1"),
    (["--read-factor", "0.5"], "--read-factor 0.5: must be a finite number ≥ 1 or 'auto'"),
    (["--read-factor", "most"], "argument --read-factor: invalid number_or_auto value: 'most'"),
    (["--clip-grad-norm", "inf"], "--clip-grad-norm inf: must be a finite number > 0"),
    (["--lr-scheduler", "notaurl"], "argument --lr-scheduler: invalid choice: 'notaurl'"),
    (["--scheduler", "notaurl"], "unrecognized arguments: --scheduler notaurl"),
    (["--batch-size", "many"], "argument --batch-size: invalid int value: 'many'"),
    (["-o", "3x", "1"], "-o '3x': a network option's name must be a Python identifier"),
    (["-n", "{tmp}/empty.yaml"], "--network-config '{tmp}/empty.yaml': must name a Python file (.py)"),
    (["--output", "{tmp}/file"], "--output {tmp}/file: not a folder (a file is there)"),
])
def test_options_are_checked_in_one_line(arguments, message, tmp_path, capsys):
    """Every option kind: a bad value is one line naming it, exit 2, before any data is read."""
    (tmp_path / "empty.yaml").write_text("")
    (tmp_path / "file").write_text("")
    arguments = [a.format(tmp=tmp_path) for a in arguments]
    status = main(["train", "--data", str(tmp_path / "none.zarr"), "--config", CONFIG, *arguments])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1, err
    assert err.startswith(f"jetstore: error: {message.format(tmp=tmp_path)}"), err


def test_a_hostile_run_json_is_one_line(tmp_path, capsys):
    """run.json nested 10^5 deep, with a bad value, or naming data that is not there: one line naming it."""
    for text, reason in (('{"options": ' + "[" * 100_000 + "]" * 100_000 + "}", "not a run description"),
                         ('{"options": {"lr": "x"}}', "--lr 'x': must be a finite number > 0"),
                         (json.dumps({"options": {"data": ["/moved/ds.zarr"], "config": CONFIG}}),
                          "its --data /moved/ds.zarr does not exist here; give --data or --predict-data")):
        (tmp_path / "run.json").write_text(text)
        assert main(["train", "--output", str(tmp_path), "--predict", str(tmp_path / "p.root")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"{tmp_path}/run.json: {reason}" in err, err


def test_a_checkpoint_inflating_to_gigabytes_is_refused_unread(tmp_path):
    """A small checkpoint whose zip directory declares a deflated 3 GiB record: refused from the directory alone,
    nothing decompressed (torch.save stores records as they are)."""
    import io
    import struct
    import zipfile

    from jetstore.errors import DatasetError

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("archive/data.pkl", bytes(1 << 20))
    data = bytearray(buffer.getvalue())
    for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):  # local header, directory entry
        at = data.index(signature) + offset
        data[at:at + 4] = struct.pack("<I", 3 << 30)
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt/latest.pt").write_bytes(bytes(data))
    with pytest.raises(DatasetError, match=r"declares 1 record\(s\) of 3,221,225,472 bytes in a file of .*compressed"):
        load_checkpoint(str(tmp_path / "ckpt"))


def test_a_network_file_for_other_inputs_is_one_line(tmp_path):
    """A weaver network file whose model takes 4 inputs, against cms_ak4's 6 input groups: one line naming both
    files, before any training."""
    from jetstore.errors import SchemaError
    from jetstore.train.network import build_network

    net = tmp_path / "part_small.py"
    net.write_text(Path(DEEP_SETS).read_text().replace(
        "def forward(self, pf_points, pf_features, pf_vectors, pf_mask, sv_features, sv_mask):",
        "def forward(self, pf_points, pf_features, pf_vectors, pf_mask):"))
    with pytest.raises(SchemaError, match=rf"^{net} does not fit {CONFIG}: its model fails on the config's 6 input "
                                          r"group\(s\) \(pf_points \(2, 64\), .*TypeError"):
        build_network(TrainOptions(network_config=str(net)), load_training_config(CONFIG), False)


def test_weaver_schedule_mode_is_weavers(tmp_path):
    """--schedule-mode weaver: flat+decay and steps change per epoch exactly as torch's MultiStepLR in weaver's
    init_opt; one-cycle is torch's OneCycleLR; the warm-up only for weaver's own three."""
    epochs, per_epoch = 10, 5
    parameter = torch.nn.Parameter(torch.zeros(1))
    for name, milestones, gamma in (("flat+decay", list(range(7, 10)), 0.01 ** (1 / 3)), ("steps", [3, 6], 0.1)):
        optimizer = torch.optim.SGD([parameter], lr=1.0)
        torch_schedule = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, gamma)
        ours = schedule(name, epochs * per_epoch, warmup=5, mode="weaver", steps_per_epoch=per_epoch)
        for epoch in range(epochs):
            for step in range(epoch * per_epoch, (epoch + 1) * per_epoch):
                assert ours(step) == pytest.approx(optimizer.param_groups[0]["lr"], rel=1e-9), (name, step)
            optimizer.step()
            torch_schedule.step()
    optimizer = torch.optim.SGD([parameter], lr=1.0)
    cycle = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1.0, total_steps=50)
    ours = schedule("one-cycle", 50, warmup=5, mode="weaver")
    for step in range(50):
        assert ours(step) == pytest.approx(optimizer.param_groups[0]["lr"], rel=1e-6), step
        optimizer.step()
        cycle.step()
    assert schedule("flat+cos", 100, warmup=10)(5) == schedule("flat+cos", 100, warmup=10, mode="weaver")(5) == 0.5


def test_bad_weight_tables_are_one_line(train_dataset, tmp_path, dask_client):
    """Stats with NaN or 1e300 weights: one line naming the stats file and the class, before the sampler divides
    by them."""
    import shutil

    from jetstore.dataset.collection import Collection
    from jetstore.stats.result import read_stats, write_stats

    copy = tmp_path / "ds.zarr"
    shutil.copytree(train_dataset, copy)
    config = load_training_config(CONFIG)
    stats = read_stats(Collection.open(str(copy)), config.hash)
    good = stats.weight_tables["label_b"].copy()
    for value in (np.nan, 1e300):
        stats.weight_tables["label_b"] = good.copy()
        with np.errstate(over="ignore"):  # float32 tables: 1e300 is stored as inf
            stats.weight_tables["label_b"][0, 0] = value
        write_stats(Dataset.open(str(copy)), stats)
        with pytest.raises(JetstoreError, match=r"_stats/.*\.json: weight_tables\.label_b: weights must be finite"):
            train(options(str(copy), tmp_path / "run", steps=1))
