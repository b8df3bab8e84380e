"""DDP on CPU (torchrun, 2 gloo ranks, the tiny ParT with dropout, weaver's ranger): every rank holds the same
weights, gradients are all-reduced once per optimizer step with --grad-accum, metrics cover every rank's jets, a
kill -9 and a rerun end with the uninterrupted run's weights bit for bit, and an epoch interrupted with 2 ranks
finishes on 1 with its batches re-dealt (none lost or taken twice but the last that would not fill a step)."""

from __future__ import annotations

import collections
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from jetstore import JetDataset
from jetstore.sampler.world import World
from jetstore.train.checkpoint import load_checkpoint
from jetstore.train.feed import Feed, Position
from jetstore.train.loop import TrainOptions, train
from tests.helpers import REPO

CONFIG = str(REPO / "tests/fixtures/weaver_cms_ak4.yaml")
DRIVER = str(REPO / "tests/fixtures/ddp_train.py")
STEPS, ACCUM, BATCH, EPOCH_JETS = 8, 2, 32, 512  # 512 jets: 8 batches per rank, 4 steps an epoch


def arguments(data: str, output) -> list[str]:
    return ["--data", data, "--config", CONFIG, "--output", str(output), "--size", "tiny", "--steps", str(STEPS),
            "--grad-accum", str(ACCUM), "--batch-size", str(BATCH), "--jets-per-epoch", str(EPOCH_JETS),
            "--jets-per-epoch-val", "128", "--checkpoint-every", "2", "--log-every", "1", "--threads", "1",
            "--no-progress"]


def torchrun(output, data: str) -> subprocess.Popen:
    output.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", DRIVER,
               str(output), *arguments(data, output)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, env={**os.environ, "OMP_NUM_THREADS": "1"})


def finished(process: subprocess.Popen) -> None:
    _, err = process.communicate(timeout=300)
    assert process.returncode == 0, err[-3000:]


@pytest.fixture(scope="module")
def straight(train_dataset, tmp_path_factory):
    output = tmp_path_factory.mktemp("ddp") / "straight"
    finished(torchrun(output, train_dataset))
    return output


@pytest.mark.slow
def test_every_rank_holds_the_same_weights(straight):
    """The same weights on both ranks (the optimizer made after the DDP wrap: Lookahead's slow weights agree),
    one all-reduce per optimizer step (no_sync on the other batches), every rank's random state in the
    checkpoints, and metrics over both ranks' jets."""
    ranks = [torch.load(straight / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    for key, value in ranks[0].items():
        assert torch.equal(value, ranks[1][key]), key
    counts = [json.loads((straight / f"rank{r}.json").read_text())["all_reduces"] for r in (0, 1)]
    assert counts[0] == counts[1] and counts[0] % STEPS == 0 and counts[0] // STEPS < ACCUM, counts
    for step in (2, 4, 6, 8):
        state = torch.load(straight / f"checkpoints/step-{step:08d}.pt", weights_only=True)
        assert len(state["ranks"]) == 2 and not torch.equal(state["ranks"][0]["cpu"], state["ranks"][1]["cpu"])
    lines = [json.loads(line) for line in (straight / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == list(range(1, STEPS + 1))
    assert all(line["jets"] == 2 * ACCUM * BATCH for line in lines)  # both ranks' batches of the step
    epochs = [json.loads(line) for line in (straight / "epochs.jsonl").read_text().splitlines()]
    assert [e["train_jets"] for e in epochs] == [EPOCH_JETS, EPOCH_JETS]


@pytest.mark.slow
def test_kill_9_and_rerun_equals_the_uninterrupted_run(straight, train_dataset, tmp_path):
    output = tmp_path / "killed"
    process = torchrun(output, train_dataset)
    checkpoint = output / "checkpoints/step-00000004.pt"
    deadline = time.monotonic() + 240
    while not checkpoint.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert checkpoint.exists() and not (output / "rank0.pt").exists()  # killed before the end
    finished(torchrun(output, train_dataset))
    for r in (0, 1):
        resumed, reference = (torch.load(folder / f"rank{r}.pt", weights_only=True) for folder in (output, straight))
        for key, value in reference.items():
            assert torch.equal(resumed[key], value), (r, key)
    steps = [json.loads(line)["step"] for line in (output / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, STEPS + 1))


@pytest.mark.slow
def test_an_epoch_begun_on_2_ranks_finishes_on_1(straight, tmp_path, caplog):
    """The straight run's checkpoint at step 2 (epoch 0, 4 of 8 batches taken on each rank), resumed by one
    process: the epoch's 8 batches left are its next 4 steps, then epochs of 16 batches (8 steps) follow."""
    import logging

    output = tmp_path / "one"
    shutil.copytree(straight, output, ignore=shutil.ignore_patterns("rank*", "tensorboard"))
    shutil.copy(output / "checkpoints/step-00000002.pt", output / "checkpoints/latest.pt")
    stored = json.loads((straight / "run.json").read_text())["options"]
    caplog.set_level(logging.INFO, "jetstore.train")
    summary = train(TrainOptions.from_dict({**stored, "output": str(output), "steps": None, "num_epochs": 2}))
    assert summary["status"] == "finished" and summary["step"] == 2 + 4 + 8
    assert "an epoch begun with 2 × 1: its 8 batches left are dealt to the new ranks (4 steps of 2" in caplog.text
    state = load_checkpoint(str(output / "checkpoints"))
    assert state["sampler"] == {"epoch": 2, "world_size": 1, "slots": 1, "batches": 0, "offset": 0, "seed": 1}


def jets(batch) -> list[tuple[int, int, int]]:
    return list(zip(batch["_sample_"].tolist(), batch["event"].tolist(), batch["ijet"].tolist(), strict=True))


@pytest.mark.parametrize(("before", "after"), [(2, 3), (1, 2)])
def test_redealt_epochs_lose_and_repeat_no_batch(train_dataset, before, after):
    """An epoch of `before` ranks, interrupted after 3 batches each (and 2 of the re-dealt remainder), finished
    by `after` ranks: the batches taken are exactly the uninterrupted epoch's, in the re-deal's order, but the
    last ones that would not give every rank a whole step."""
    def make(world: World) -> JetDataset:
        return JetDataset(train_dataset, CONFIG, 16, jets_per_epoch=320, observers=True, world=world, seed=3,
                          split="train", threads=1)

    def feed(rank: int, size: int) -> Feed:
        return Feed(make(World(rank, size)), make, 0, 2, rank, size, torch.device("cpu"), 3)

    straight = [list(make(World(r, before))) for r in range(before)]
    order = [straight[r][i] for i in range(3, len(straight[0])) for r in range(before)]  # the re-deal's order
    position = Position(0, before, 1, batches=3)
    taken = collections.Counter()
    for rank in range(after):
        mine = list(feed(rank, after).batches(position))
        assert len(mine) == feed(rank, after).steps(position) * 2
        for index, batch in enumerate(mine):
            assert jets(batch) == jets(order[rank + index * after])
            taken.update(jets(batch))
    kept = len(order) // (after * 2) * after * 2
    assert taken == collections.Counter(j for batch in order[:kept] for j in jets(batch))
    assert len(order) - kept < after * 2
    second = feed(0, after).advanced(position, 2)  # stopped again after one step, resumed by the same ranks
    assert second.offset == 2 * after and feed(0, after).steps(second) == feed(0, after).steps(position) - 1
    assert np.array_equal(next(iter(feed(0, after).batches(second)))["event"], order[2 * after]["event"])
