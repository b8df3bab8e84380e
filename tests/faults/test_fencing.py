"""Fencing: a writer that stalls past its lease (SIGSTOP, a paused VM, a suspended batch job) between its
lease check and a write, while another run takes the lease over and commits, can never replace what the
newer run wrote or delete it. Writer A is a real conversion in a subprocess that stops itself just before
the step (``stalled_writer.py``); writer B breaks its lease, converts with other options (another plan,
``--overwrite``) and commits; then A is continued. On local disk, moto and a real Ceph RGW."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time

import pytest

from jetstore.dataset.dataset import Dataset
from jetstore.dataset.lease import Lease
from jetstore.dataset.manifest import read_manifest_version
from jetstore.errors import LeaseError
from jetstore.io import filesystems
from jetstore.io.backend import open_backend
from jetstore.model import paths
from tests.helpers import REPO, run_convert

WRITER = REPO / "tests" / "faults" / "stalled_writer.py"


def start_frozen(point: str, url: str, env: dict, files: list[str], *options: str) -> subprocess.Popen:
    """Writer A, stopped (state T) just before ``point``."""
    environ = {k: v for k, v in os.environ.items() if k != "DASK_SCHEDULER_ADDRESS"}
    process = subprocess.Popen([sys.executable, str(WRITER), point, url, *files, *options], cwd=REPO,
                               env={**environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    seen = ""
    while "frozen" not in seen and time.time() < deadline:
        ready, _, _ = select.select([process.stdout], [], [], 1)
        if ready:
            seen += process.stdout.readline()
        if process.poll() is not None:
            pytest.fail(f"writer A ended before freezing: {seen} {process.stderr.read()}")
    while _state(process.pid) != "T" and time.time() < deadline:
        time.sleep(0.05)
    assert _state(process.pid) == "T", seen
    return process


def resume(process: subprocess.Popen) -> tuple[int, str]:
    os.kill(process.pid, signal.SIGCONT)
    out, err = process.communicate(timeout=120)
    return process.returncode, out + err


def intact(url: str, options: dict) -> bytes:
    """The manifest's bytes, after checking every shard it lists against its checksums and counts."""
    dataset = Dataset.open(url, options or None)
    assert dataset.manifest.shards
    assert all(dataset.verify(shard) == [] for shard in dataset.manifest.shards)
    return open_backend(url, options).read(paths.MANIFEST)


@pytest.mark.slow
def test_a_writer_stalled_before_its_commit_point_never_commits(dask_client, sample_files, target):
    stalled_writer_never_commits(dask_client, sample_files, target, "seal")


@pytest.mark.slow
def test_a_writer_stalled_before_a_shard_publish_never_commits(dask_client, sample_files, target_local_ceph):
    stalled_writer_never_commits(dask_client, sample_files, target_local_ceph, "publish")


def stalled_writer_never_commits(dask_client, sample_files, target, point: str) -> None:
    url, options, env = target
    writer_a = start_frozen(point, url, env, sample_files[:1], "--jets-per-shard", "500")
    try:
        report = run_convert(dask_client, sample_files[:1], url, options=options or None, jets_per_shard=700,
                             overwrite=True, break_lease=True)
    finally:
        code, output = resume(writer_a)
    assert report.ok and report.manifest.jets_per_shard == 700
    committed = intact(url, options)
    assert code == 4 and "this conversion lost its write lease" in output and "Traceback" not in output, output
    assert intact(url, options) == committed  # B's manifest, every shard of it intact
    assert Dataset.open(url, options or None).manifest.generation == report.manifest.generation


@pytest.mark.slow
def test_a_stalled_clean_up_deletes_nothing_newer(dask_client, sample_files, target_local_ceph):
    """A sealed and installed its manifest, then stalled before its clean-up: B completes A's commit
    (A's manifest stays committed), commits its own over it, and A's late deletes touch only older names."""
    url, options, env = target_local_ceph
    assert run_convert(dask_client, sample_files[:1], url, options=options or None, jets_per_shard=1500).ok
    writer_a = start_frozen("clean-up", url, env, sample_files[:1], "--jets-per-shard", "500", "--overwrite")
    try:
        messages: list[str] = []
        from jetstore import convert

        report = convert(sample_files[:1], "cms_ak4", url, client=dask_client, storage_options=options or None,
                         progress=False, jets_per_shard=700, overwrite=True, break_lease=True, log=messages.append)
    finally:
        code, output = resume(writer_a)
    assert report.ok and any("took over the write lease" in m for m in messages)
    committed = intact(url, options)
    assert code == 0 and "committed generation" in output, output  # A's commit happened before it stalled
    assert intact(url, options) == committed
    shards = {s.path for s in Dataset.open(url, options or None).manifest.shards}
    assert all(path.rsplit(".g", 1)[1].startswith(str(report.manifest.generation)) for path in shards)


@pytest.mark.slow
def test_a_writer_stalled_after_sealing_never_rewrites_the_history(dask_client, sample_files, tmp_path):
    """A sealed its commit, then stalled before writing its manifest's version to the history
    (``_manifests/1.json``); B takes over (completing A's commit), commits its own version 1; A's late write
    must not replace B's: the history and ``_manifest.json`` agree (was: the history held A's losing manifest)."""
    url = str(tmp_path / "ds.zarr")
    writer_a = start_frozen("sealed", url, {}, sample_files[:1], "--jets-per-shard", "500")
    try:
        report = run_convert(dask_client, sample_files[:1], url, jets_per_shard=700, overwrite=True,
                             break_lease=True)
    finally:
        code, output = resume(writer_a)
    assert report.ok and code == 4 and "Traceback" not in output, output
    committed = intact(url, {})
    history = read_manifest_version(*filesystems.filesystem(url), 1)
    assert history.jets_per_shard == 700 and (tmp_path / "ds.zarr" / paths.MANIFESTS / "1.json").read_bytes() \
        == committed


def test_a_stale_lease_token_never_writes(target):
    """The protocol's core on each storage: of two writers acting on the same version of the lease, only the
    first one's write lands; the second renews, seals and releases nothing."""
    url, options, _ = target
    backend = open_backend(url, options)
    first, second = (Lease(backend, url, run_id) for run_id in ("a" * 32, "b" * 32))
    assert first.acquire() is None and first.generation == 1
    second.acquire(break_lease=True)  # takes over: generation 2
    assert second.generation == 2
    for step in (first.renew, first.seal, first.check):
        with pytest.raises(LeaseError, match=r"lost its write lease .*now held by run bbbbbbbbbbbb"):
            step()
    first.release()  # nothing happens
    assert second.check().state == "writing"
    second.seal()
    second.release()
    third = Lease(backend, url, "c" * 32)
    assert third.acquire() is None and third.generation == 3  # a released lease: taken, no takeover


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as handle:
        return handle.read().rsplit(")", 1)[1].split()[0]
