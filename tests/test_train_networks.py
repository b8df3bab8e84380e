"""weaver-core network files run unchanged: the data_config they get matches weaver's own DataConfig, ParT and
ParticleNet files (in the style of particle_transformer's examples) train, predict and export to ONNX through
the real command line, and weaver builds the same network from the same file and loads the saved weights."""

from __future__ import annotations

import ast
import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from jetstore import JetDataset
from jetstore.cli import main
from jetstore.config import load_training_config
from jetstore.train.checkpoint import BEST_MODEL
from jetstore.train.network import DataConfig, load_network_file
from jetstore.train.options import read_run
from jetstore.train.predict import load_trained
from tests.helpers import REPO, config_with_stats

CONFIG = str(REPO / "tests/fixtures/weaver_cms_ak4.yaml")
NETWORKS = REPO / "tests/fixtures/networks"
PART = str(NETWORKS / "example_ParticleTransformer.py")
SMALL_PART = ["-o", "embed_dims", "[16, 32, 16]", "-o", "pair_embed_dims", "[8, 8]", "-o", "num_heads", "2",
              "-o", "num_layers", "1", "-o", "num_cls_layers", "1"]


def jetstore_train(capsys, *args: str) -> dict:
    status = main(["train", "--batch-size", "32", "--jets-per-epoch", "128", "--jets-per-epoch-val", "64",
                   "--no-progress", *args])
    out, err = capsys.readouterr()
    assert status == 0, err
    return json.loads(out)


@pytest.fixture(scope="module")
def part_run(train_dataset, tmp_path_factory):
    """ParT from a weaver network file, 2 epochs of 4 steps, via ``jetstore train -n FILE -o ...``."""
    output = tmp_path_factory.mktemp("part") / "run"
    status = main(["train", "--data", train_dataset, "--config", CONFIG, "--output", str(output), "-n", PART,
                   *SMALL_PART, "--num-epochs", "2", "--batch-size", "32", "--jets-per-epoch", "128",
                   "--jets-per-epoch-val", "64", "--no-progress"])
    assert status == 0
    return output


def test_data_config_matches_weavers(train_dataset, part_run):
    """What a network file reads from data_config, against weaver-core's DataConfig of the same (exported)
    config; and the preprocess.json both write."""
    from weaver.utils.data.config import DataConfig as WeaverDataConfig

    exported = part_run / "data_config.yaml"
    theirs = WeaverDataConfig.load(str(exported))
    ours = DataConfig(load_training_config(exported))
    for name in ("input_names", "input_dicts", "input_shapes", "label_type", "label_value", "label_names",
                 "observer_names", "monitor_variables", "z_variables", "selection", "weight_name", "labels",
                 "inputs", "preprocess_params"):
        assert getattr(ours, name) == getattr(theirs, name), name
    ours.export_json(part_run / "ours.json")
    theirs.export_json(str(part_run / "theirs.json"))
    assert json.loads((part_run / "ours.json").read_text()) == json.loads((part_run / "theirs.json").read_text())
    with pytest.raises(AttributeError):
        _ = ours.no_such_option


def test_part_network_file_trains_and_weaver_loads_its_weights(part_run):
    epochs = [json.loads(line) for line in (part_run / "epochs.jsonl").read_text().splitlines()]
    assert [e["step"] for e in epochs] == [4, 8] and all(np.isfinite(e["val_loss"]) for e in epochs)
    run = json.loads((part_run / "run.json").read_text())["options"]
    assert run["network_config"] == PART and ["num_layers", "1"] in run["network_options"]
    # weaver-core builds the model from the same file and options, and loads the saved weights strictly
    from weaver.utils.data.config import DataConfig as WeaverDataConfig

    module = load_network_file(PART)
    options = {k: ast.literal_eval(v) for k, v in zip(SMALL_PART[1::3], SMALL_PART[2::3], strict=True)}  # weaver's rule
    model, _ = module.get_model(WeaverDataConfig.load(str(part_run / "data_config.yaml")), **options)
    weights = torch.load(part_run / "checkpoints" / BEST_MODEL, weights_only=True)
    assert model.load_state_dict(weights, strict=True) is not None and all(k.startswith("mod.") for k in weights)


@pytest.mark.slow
def test_predict_and_onnx_read_the_run_back(part_run, tmp_path, capsys):
    """--predict / --export-onnx with the run folder and its network file named again (or --trust-run); ONNX
    Runtime's scores equal torch's."""
    onnxruntime = pytest.importorskip("onnxruntime", reason="ONNX Runtime is in the dev extra")

    out = tmp_path / "part.root"
    assert main(["train", "--output", str(part_run), "--predict", str(out), "-n", PART, "--no-progress"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["model"].endswith(BEST_MODEL) and 0 <= summary["auc_b_vs_uds"] <= 1
    onnx_path = tmp_path / "part.onnx"
    assert main(["train", "--output", str(part_run), "--export-onnx", str(onnx_path), "--trust-run"]) == 0
    exported = json.loads(capsys.readouterr().out)
    assert exported["inputs"] == ["pf_points", "pf_features", "pf_vectors", "pf_mask", "sv_features", "sv_mask"]
    preprocess = json.loads((tmp_path / "preprocess.json").read_text())
    assert preprocess["pf_features"]["var_length"] == 64 and preprocess["output_names"][0] == "label_b"

    # ONNX Runtime against torch on jets with 64 particles: with padded (zero) 4-vectors, weaver-core's ParT
    # exported by torch 2.13 gives NaN (atan2(0, 0) becomes 0/0 in the graph; weaver's own --export-onnx too)
    session = onnxruntime.InferenceSession(str(onnx_path))
    used = [i.name for i in session.get_inputs()]  # inputs the network ignores are not in the graph (as weaver's)
    assert used == ["pf_features", "pf_vectors", "pf_mask"]
    generator = torch.Generator().manual_seed(3)
    inputs = {"pf_features": torch.randn(4, 10, 64, generator=generator), "pf_mask": torch.ones(4, 1, 64),
              "pf_vectors": torch.rand(4, 4, 64, generator=generator) + torch.tensor([0, 0, 0, 2.0])[:, None]}
    network, _ = load_trained(read_run(str(part_run)), load_training_config(part_run / "data_config.yaml"),
                              for_inference=True)
    with torch.no_grad():
        expected = network(network.model, {**inputs, "pf_points": None, "sv_features": None, "sv_mask": None})[0]
    onnx_scores = session.run(None, {k: inputs[k].numpy() for k in used})[0]
    np.testing.assert_allclose(onnx_scores, expected.numpy(), atol=2e-5)
    np.testing.assert_allclose(onnx_scores.sum(axis=1), 1, rtol=1e-5)


def test_particlenet_network_file(train_dataset, tmp_path, capsys):
    summary = jetstore_train(capsys, "--data", train_dataset, "--config", CONFIG, "--output", str(tmp_path),
                             "-n", str(NETWORKS / "example_ParticleNet.py"), "-o", "conv_params",
                             "[(4, (16, 16))]", "-o", "fc_params", "[(16, 0.1)]", "--steps", "3",
                             "--optimizer", "adamw", "--lr-scheduler", "one-cycle")
    assert summary["status"] == "finished" and summary["step"] == 3 and 0 <= summary["val_accuracy"] <= 1
    weights = torch.load(tmp_path / "checkpoints" / BEST_MODEL, weights_only=True)
    assert any(k.startswith("mod.edge_convs.0") for k in weights)
    # its ONNX export scores real (padded) held-out jets as torch does
    onnxruntime = pytest.importorskip("onnxruntime", reason="ONNX Runtime is in the dev extra")

    assert main(["train", "--output", str(tmp_path), "--export-onnx", str(tmp_path / "pn.onnx"), "--trust-run"]) == 0
    capsys.readouterr()
    config = load_training_config(tmp_path / "data_config.yaml")
    batch = next(iter(JetDataset(train_dataset, config, 16, training=False, split="holdout")))
    network, _ = load_trained(read_run(str(tmp_path)), config)
    with torch.no_grad():
        expected = torch.softmax(network(network.model, batch)[0], dim=1).numpy()
    session = onnxruntime.InferenceSession(str(tmp_path / "pn.onnx"))
    scores = session.run(None, {i.name: batch[i.name].numpy() for i in session.get_inputs()})[0]
    np.testing.assert_allclose(scores, expected, atol=2e-5)


def test_regression_network_file(train_dataset, dask_client, tmp_path, capsys):
    """A weaver regression file (get_loss: MSE) on labels.type custom."""
    config = config_with_stats(train_dataset, tmp_path / "regression.yaml", dask_client, lambda data: data.update(
        labels={"type": "custom", "value": {"response": "jet_mass / jet_pt"}}))
    summary = jetstore_train(capsys, "--data", train_dataset, "--config", config, "--output",
                             str(tmp_path / "file"), "-n", str(NETWORKS / "deep_sets.py"), "--steps", "6",
                             "--regression-mode", "--lr", "0.01", "--optimizer", "sgd")
    assert summary["epochs"] == 2 and {"val_response_bias", "val_response_resolution"} <= set(summary)
    out = tmp_path / "file.parquet"
    assert main(["train", "--output", str(tmp_path / "file"), "--predict", str(out), "--trust-run",
                 "--no-progress"]) == 0
    predicted = json.loads(capsys.readouterr().out)
    table = pq.read_table(out)
    residual = table.column("pred_response").to_numpy() - table.column("response").to_numpy()
    assert predicted["response_bias"] == pytest.approx(float(residual.mean()), rel=1e-4, abs=1e-6)
    # MSE loss on the held-out jets is the mean squared residual of the validation
    epochs = [json.loads(line) for line in (tmp_path / "file/epochs.jsonl").read_text().splitlines()]
    assert epochs[-1]["val_loss"] == pytest.approx(epochs[-1]["val_response_resolution"] ** 2
                                                   + epochs[-1]["val_response_bias"] ** 2, rel=0.05)
