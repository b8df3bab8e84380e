"""Conversion interrupted by a killed Dask worker: the run completes and the dataset is identical (same
jets, same checksums) to an uninterrupted run; nothing lost, nothing duplicated."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
from distributed import Client, LocalCluster

from jetstore.dataset.dataset import Dataset
from tests.conftest import assert_table_matches, reference_for
from tests.helpers import run_convert


@pytest.mark.slow
def test_killed_worker_then_identical_dataset(sample_files, tmp_path):
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        clean = run_convert(client, sample_files, tmp_path / "clean" / "ds", jets_per_shard=50)
        out = tmp_path / "killed" / "ds"  # the same dataset name: shards are named after it
        result = {}
        worker = threading.Thread(target=lambda: result.setdefault(
            "report", run_convert(client, sample_files, out, jets_per_shard=50)))
        worker.start()
        deadline = time.time() + 60
        while time.time() < deadline and len(list((out / "_commits").glob("*.json"))
                                             if (out / "_commits").exists() else []) < 5:
            time.sleep(0.02)
        pids = client.run(os.getpid)
        victim = sorted(pids.values())[0]
        os.kill(victim, signal.SIGKILL)  # the nanny restarts it; its running task is rescheduled
        killed_mid_run = "report" not in result
        worker.join(timeout=180)
        report = result["report"]
    assert killed_mid_run and report.ok, report.failures
    assert len(list((out / "_commits").glob("*.json"))) == len(clean.manifest.shards) == 30 + 20
    assert [(s.name, s.checksum, s.n_jets) for s in report.manifest.shards] == \
        [(s.name, s.checksum, s.n_jets) for s in clean.manifest.shards]
    dataset = Dataset.open(str(out))
    assert_table_matches(dataset.read_all(), reference_for(dataset), dataset.schema)
    assert not (out / ".staging").exists()
