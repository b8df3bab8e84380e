"""weaver-core trains on a jetstore dataset with what ``export-weaver --files`` writes and prints: the exported
config, the training and held-out jets as shuffled Parquet files, and the command, run as printed (plus a small
network and a few steps) by weaver-core's own train.py; every class of the held-out jets is in its validation."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from jetstore.cli import main
from jetstore.dataset.dataset import Dataset
from jetstore.interop.weaver import weaver_file_name
from jetstore.model.split import Split
from tests.helpers import REPO

CONFIG = str(REPO / "tests/fixtures/weaver_cms_ak4.yaml")
NETWORK = str(REPO / "tests/fixtures/networks/example_ParticleTransformer.py")
LABELS = ["label_b", "label_bb", "label_c", "label_cc", "label_uds", "label_g"]
SMALL = ["-o", "embed_dims", "[16, 32, 16]", "-o", "pair_embed_dims", "[8, 8]", "-o", "num_heads", "2",
         "-o", "num_layers", "1", "-o", "num_cls_layers", "1"]


@pytest.mark.slow
def test_weaver_trains_on_the_exported_files(train_dataset, tmp_path, capsys):
    files, config = tmp_path / "weaver", tmp_path / "weaver.yaml"
    assert main(["export-weaver", train_dataset, "--config", CONFIG, "-o", str(config), "--files", str(files),
                 "--network-config", NETWORK]) == 0
    command = capsys.readouterr().out.strip()
    assert command.startswith("weaver --data-train ") and "--no-remake-weights" in command
    exported = yaml.safe_load(config.read_text())
    assert exported["weights"]["reweight_hists"] and exported["preprocess"]["method"] == "manual"
    assert f"# weaver-core: {command}" in config.read_text()

    # the files hold every jet once: the held-out ones (jetstore's split) in val/, shuffled
    dataset = Dataset.open(train_dataset)
    held_out = 0
    for index, shard in enumerate(dataset.manifest.shards):
        name = weaver_file_name(dataset.url, index)
        assert name == f"sample.{index:05d}.parquet"
        train, val = (pq.read_table(files / part / name) for part in ("train", "val"))
        provenance = dataset.read_shard(shard).jets
        entries, inputs = provenance["_entry"], provenance.get("_input")
        held = Split("holdout").mask(shard.sources, entries, inputs)
        for part, rows in ((val, held), (train, ~held)):  # (piece, entry) identifies a jet of a packed shard
            got = np.stack([part.column("_input").to_numpy() if inputs is not None else np.zeros(part.num_rows),
                            part.column("_entry").to_numpy()])
            want = np.stack([inputs[rows] if inputs is not None else np.zeros(rows.sum()), entries[rows]])
            np.testing.assert_array_equal(got[:, np.lexsort(got)], want[:, np.lexsort(want)])
        labels = np.argmax(np.stack([train.column(c).to_numpy() for c in LABELS], axis=1), axis=1)
        assert (np.diff(labels) < 0).any()  # no longer sorted by class
        held_out += val.num_rows
    assert 0.07 < held_out / dataset.manifest.n_jets < 0.13

    # weaver-core's train.py, as printed, with a small network, a few steps and the CPU
    arguments = shlex.split(command)[1:] + SMALL + [
        # validation: 320 jets drawn by weaver's reweighting from the ~250 held-out jets (one pass keeps ~40),
        # whole (shuffled) files per fetch: 1% of these small files would be one jet per read
        "--num-epochs", "1", "--steps-per-epoch", "3", "--steps-per-epoch-val", "40", "--batch-size-val", "8",
        "--fetch-step-val", "1",
        "--batch-size", "32",
        "--gpus", "", "--num-workers", "0", "--model-prefix", str(tmp_path / "model/net"),
        "--log-file", str(tmp_path / "weaver.log")]
    result = subprocess.run([sys.executable, "-m", "weaver.train", *arguments], capture_output=True, text=True,
                            timeout=300, cwd=tmp_path)
    log = (tmp_path / "weaver.log").read_text() if (tmp_path / "weaver.log").exists() else result.stderr
    assert result.returncode == 0, log[-3000:]
    assert "Zero entries" not in log and (tmp_path / "model/net_best_epoch_state.pt").exists()
    distribution = re.findall(r"Evaluation class distribution: \n\s*(\[.*?\])", log)
    assert distribution, log[-2000:]
    pairs = re.findall(r"\((?:np\.int64\()?(\d+)\)?, (\d+)\)", distribution[-1])  # [(np.int64(0), 6), ...]
    seen = {int(label) for label, count in pairs if int(count) > 0}
    val = pq.read_table(files / "val", columns=LABELS)
    present = {i for i, c in enumerate(LABELS) if val.column(c).to_numpy().any()}
    assert seen == present == set(range(len(LABELS)))


def test_without_files_the_export_says_how(train_dataset, tmp_path, capsys):
    assert main(["export-weaver", train_dataset, "--config", CONFIG, "-o", str(tmp_path / "w.yaml")]) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and "add --files DIR" in captured.err and "sorted by class and pT" in captured.err
