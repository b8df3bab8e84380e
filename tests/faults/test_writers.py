"""One writer at a time: the write lease on local disk, moto and Ceph RGW. A second conversion refuses with
one line naming the holder; racing conversions leave one intact dataset; a crashed writer's lease is taken
over (dead process, or ``--break-lease``); a run that loses its lease stops writing and says so."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time

import pytest

from jetstore.dataset.dataset import Dataset
from jetstore.dataset.lease import Lease, LeaseRecord
from jetstore.errors import LeaseError
from jetstore.io import filesystems
from jetstore.io.backend import open_backend
from jetstore.model import paths
from tests.helpers import REPO, cli, run_convert


def lease_at(url: str, options: dict, run_id: str) -> Lease:
    return Lease(open_backend(url, options), url, run_id)


def plant(url: str, options: dict, record: LeaseRecord | dict) -> None:
    data = record if isinstance(record, dict) else record.__dict__
    open_backend(url, options).put(paths.LEASE, json.dumps(data).encode())


def test_second_writer_is_refused_naming_the_holder(dask_client, sample_files, target):
    url, options, _ = target
    holder = lease_at(url, options, "a" * 32)
    refused = pytest.raises(LeaseError, match=r"another conversion is writing this dataset: run aaaaaaaaaaaa \(pid")
    with holder.held(), refused:
        run_convert(dask_client, sample_files, url, options=options or None, jets_per_shard=300)
    report = run_convert(dask_client, sample_files, url, options=options or None, jets_per_shard=300)
    assert report.ok and report.written > 0
    assert lease_at(url, options, "f" * 32).read()[0].state == "released"  # released at the end


@pytest.mark.slow
def test_racing_conversions_leave_one_intact_dataset(sample_files, target):
    """Two CLI conversions with different shard sizes started 0.5 s apart: one wins, the other refuses with
    exit code 4 and the holder, never blaming an input; the dataset verifies completely."""
    url, _, env = target
    runs = []
    for jets_per_shard in (300, 3000):
        command = [sys.executable, "-m", "jetstore", "convert", *sample_files, "--schema", "cms_ak4", "-o", url,
                   "--jets-per-shard", str(jets_per_shard), "--workers", "1", "--no-progress"]
        runs.append(subprocess.Popen(command, cwd=REPO, env={**_environ(), **env}, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True))
        time.sleep(0.5)
    results = [(run.wait(timeout=300), run.stderr.read()) for run in runs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 4], results
    loser = next(err for code, err in results if code == 4)
    assert "another conversion is writing this dataset" in loser and "Traceback" not in loser
    assert not any(name.split("/")[-1] in loser for name in sample_files)
    verified = cli("verify", url, env=env)
    assert verified.returncode == 0, verified.stderr
    winner = 300 if results[0][0] == 0 else 3000
    assert Dataset.open(url).manifest.jets_per_shard == winner


@pytest.mark.slow
def test_lease_of_a_crashed_writer_is_taken_over(dask_client, sample_files, target):
    url, options, _ = target
    now = time.time()
    # another host, renewed just now: refused; --break-lease takes over
    plant(url, options, LeaseRecord("b" * 32, "other-host", 4242, now, now))
    with pytest.raises(LeaseError, match="bbbbbbbbbbbb"):
        run_convert(dask_client, sample_files, url, options=options or None, jets_per_shard=3000)
    messages = []
    report = convert_logged(dask_client, sample_files, url, options, messages, break_lease=True)
    assert report.ok and any("took over the write lease of run bbbbbbbbbbbb" in m for m in messages)
    # this host, a process that no longer exists: stale at once
    plant(url, options, LeaseRecord("c" * 32, socket.gethostname(), _dead_pid(), now, now))
    messages.clear()
    assert convert_logged(dask_client, sample_files, url, options, messages).ok
    assert any("cccccccccccc" in m for m in messages)
    # another host, not renewed for longer than the TTL: stale
    plant(url, options, LeaseRecord("d" * 32, "other-host", 4242, now - 1000, now - 1000))
    messages.clear()
    assert convert_logged(dask_client, sample_files, url, options, messages).ok
    assert any("dddddddddddd" in m for m in messages)


def test_a_run_that_loses_its_lease_stops_writing(dask_client, sample_files, tmp_path):
    """Another run breaks the lease mid-conversion: this one fails with a LeaseError naming the new holder,
    and writes no manifest."""
    url = str(tmp_path / "ds.zarr")
    fs, root = filesystems.filesystem(url, {})
    failure: dict[str, BaseException] = {}

    def convert() -> None:
        try:
            run_convert(dask_client, sample_files, url, jets_per_shard=25)
        except BaseException as exc:
            failure["error"] = exc

    thread = threading.Thread(target=convert)
    thread.start()
    deadline = time.time() + 120
    while time.time() < deadline and len(fs.ls(paths.join(root, paths.COMMITS))
                                         if fs.exists(paths.join(root, paths.COMMITS)) else []) < 3:
        time.sleep(0.02)
    now = time.time()
    plant(url, {}, LeaseRecord("e" * 32, "other-host", 4242, now, now))
    thread.join(timeout=300)
    assert isinstance(failure.get("error"), LeaseError), failure
    assert "eeeeeeeeeeee" in str(failure["error"])
    assert not fs.exists(paths.join(root, paths.MANIFEST))


def convert_logged(client, files, url, options, messages, **kwargs):
    from jetstore import convert

    return convert(list(files), "cms_ak4", url, client=client, storage_options=options or None, progress=False,
                   jets_per_shard=3000, overwrite=True, log=messages.append, **kwargs)


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def _environ() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k != "DASK_SCHEDULER_ADDRESS"}
