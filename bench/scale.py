"""Scale-out benchmark: ``jetstore convert`` and ``jetstore stats`` on an external Dask cluster (a scheduler and
2 single-threaded workers, processes of their own in their own directory) into a real Ceph RGW, at 1M and
10M jets.

    python bench/scale.py [--sizes 1000000,10000000] [--workdir bench/out/scale]

Inputs are symlinked copies of ../shared/data/cms_ak4 under distinct names (one shard per input file: 1,770
shards at 10M jets). The Ceph RGW is started with tests/ceph/rgw.sh (its in-memory OSD raised to hold the
data). Reported per size: convert and stats wall time and jets/s (wall, and per core: jets / CPU seconds of
the workers), client and worker peak RSS, objects written, manifest size, and the time a fresh process
takes to open the dataset. Memory must stay flat and time linear from 1M to 10M.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from common import copies_of  # noqa: E402

from tests.external import ENV_WITHOUT_SCHEDULER, ExternalCluster  # noqa: E402

SHARED = REPO.parent / "shared"
MEMSTORE_BYTES = 20 << 30


def start_ceph(directory: Path) -> dict[str, str]:
    ports = {"CEPH_HTTP_PORT": "7580", "CEPH_HTTPS_PORT": "7543"}  # beside a test gateway on the default ports
    out = subprocess.run(["bash", str(REPO / "tests/ceph/rgw.sh"), "start", str(directory)], capture_output=True,
                         text=True, check=True, timeout=300, env={**os.environ, **ports}).stdout
    env = dict(item.split("=", 1) for item in out.split()[1:])
    root = Path(os.environ.get("CEPH_RGW_ROOT", Path.home() / ".cache/ceph-rgw")) / "root"
    libraries = f"{root}/usr/lib/x86_64-linux-gnu"
    paths = f"{libraries}:{libraries}/ceph:{root}/lib/x86_64-linux-gnu:{root}/usr/lib"
    ceph_env = {**os.environ, "LD_LIBRARY_PATH": paths,
                "PYTHONPATH": f"{root}/usr/lib/python3/dist-packages"}
    # memstore's capacity is read at every statfs: raise it so the OSD takes the 10M-jet dataset
    subprocess.run(["/usr/bin/python3", f"{root}/usr/bin/ceph", "-c", f"{directory}/ceph.conf", "tell", "osd.0",
                    "config", "set", "memstore_device_bytes", str(MEMSTORE_BYTES)], env=ceph_env, check=True,
                   capture_output=True, timeout=60)
    return {"AWS_ENDPOINT_URL": env["JETSTORE_CEPH_HTTP"], "AWS_ACCESS_KEY_ID": "JETKEY",
            "AWS_SECRET_ACCESS_KEY": "JETSECRET", "AWS_DEFAULT_REGION": "us-east-1"}


def inputs_for(jets: int, directory: Path) -> list[str]:
    """Symlinked copies of ../shared/data/cms_ak4 (33,958 jets each set) holding at least ``jets`` jets."""
    files = sorted(glob.glob(str(SHARED / "data/cms_ak4/*.root")))
    return copies_of(files, -(-jets // 33_958), directory)


def run(command: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float]:
    """Run a command; (wall seconds, its peak RSS in MB as GNU time reports it)."""
    start = time.perf_counter()
    done = subprocess.run(["/usr/bin/time", "-f", "MAXRSS %M", *command], env=env, cwd=cwd, capture_output=True,
                          text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command[:4])} failed:\n{done.stderr[-2000:]}")
    return wall, int(done.stderr.rsplit("MAXRSS", 1)[1].split()[0]) / 1024


def cpu(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except OSError:
            pass
    return total


def peak_rss(pids: list[int]) -> float:
    peaks = []
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            peaks.append(int(status.split("VmHWM:")[1].split()[0]) / 1024)
        except (OSError, IndexError):
            pass
    return max(peaks, default=0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000000,10000000")
    parser.add_argument("--workdir", default=str(REPO / "bench/out/scale"))
    parser.add_argument("--config", default=str(SHARED / "bench/weaver_cms_ak4.yaml"))
    args = parser.parse_args()
    work = Path(args.workdir)
    shutil.rmtree(work / "ceph", ignore_errors=True)
    rows = []
    try:
        s3 = start_ceph(work / "ceph")
        env = {**ENV_WITHOUT_SCHEDULER, **s3}
        client_dir = work / "client"
        client_dir.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-c", "import s3fs, os; s3fs.S3FileSystem().mkdir('scale')"], env=env,
                       check=True)
        with ExternalCluster(work / "workers", workers=2) as cluster:
            workers = cluster.worker_pids()
            jetstore = [sys.executable, "-m", "jetstore"]
            for jets in (int(s) for s in args.sizes.split(",")):
                inputs = inputs_for(jets, work / f"inputs-{jets}")
                url = f"s3://scale/ak4-{jets}.zarr"
                before = cpu(workers)
                wall, client_peak = run([*jetstore, "convert", *inputs, "--schema", "cms_ak4", "-o", url,
                                              "--scheduler", cluster.address, "--no-progress"], env, client_dir)
                convert_cpu = cpu(workers) - before
                summary = json.loads(subprocess.run([*jetstore, "inspect", url, "--json"], env=env, check=True,
                                                    capture_output=True, text=True).stdout)
                n = summary["jets"]
                opened = subprocess.run([sys.executable, "-c", "import sys, time; from jetstore import Dataset; "
                                         "t = time.perf_counter(); d = Dataset.open(sys.argv[1]); "
                                         "print(time.perf_counter() - t, len(d.manifest.shards))", url],
                                        env=env, check=True, capture_output=True, text=True).stdout.split()
                listing = subprocess.run([sys.executable, "-c", "import s3fs, sys; fs = s3fs.S3FileSystem(); "
                                          "p = sys.argv[1][5:]; print(len(fs.find(p)), fs.size(p + '/_manifest.json'))",
                                          url], env=env, check=True, capture_output=True, text=True).stdout.split()
                before = cpu(workers)
                stats_wall, stats_peak = run([*jetstore, "stats", url, "--config", args.config,
                                                 "--scheduler", cluster.address], env, client_dir)
                stats_cpu = cpu(workers) - before
                row = {"jets": n, "shards": summary["shards"], "convert_s": wall, "convert_jets_s": n / wall,
                       "convert_per_core": n / convert_cpu, "convert_client_mb": client_peak,
                       "stats_s": stats_wall, "stats_jets_s": n / stats_wall, "stats_per_core": n / stats_cpu,
                       "stats_client_mb": stats_peak, "worker_peak_mb": peak_rss(workers),
                       "objects": int(listing[0]), "manifest_kb": int(listing[1]) / 1024,
                       "open_s": float(opened[0]), "stored_gb": summary["bytes"] / 1e9}
                rows.append(row)
                print(json.dumps(row), flush=True)
    finally:
        subprocess.run(["bash", str(REPO / "tests/ceph/rgw.sh"), "stop", str(work / "ceph")], capture_output=True)
    print("\n| | " + " | ".join(f"{r['jets']:,} jets" for r in rows) + " |")
    print("| --- |" + " ---: |" * len(rows))
    for key, label, fmt in (
        ("shards", "shards (objects written)", "{:,}"), ("stored_gb", "stored GB", "{:.2f}"),
        ("convert_s", "convert wall s", "{:,.0f}"), ("convert_jets_s", "convert jets/s wall", "{:,.0f}"),
        ("convert_per_core", "convert jets/s per worker core", "{:,.0f}"),
        ("convert_client_mb", "convert client peak RSS MB", "{:,.0f}"),
        ("stats_s", "stats wall s", "{:,.0f}"), ("stats_jets_s", "stats jets/s wall", "{:,.0f}"),
        ("stats_per_core", "stats jets/s per worker core", "{:,.0f}"),
        ("stats_client_mb", "stats client peak RSS MB", "{:,.0f}"), ("worker_peak_mb", "worker peak RSS MB", "{:,.0f}"),
        ("objects", "objects in the dataset", "{:,}"), ("manifest_kb", "manifest KB", "{:,.0f}"),
        ("open_s", "open the dataset, fresh process, s", "{:.2f}"),
    ):
        print(f"| {label} | " + " | ".join(fmt.format(r[key]) for r in rows) + " |")


if __name__ == "__main__":
    main()
