"""A Dask cluster as users run it: ``dask scheduler`` and ``dask worker`` processes of their own, started in
a directory of their own (used by tests/test_cluster.py and bench/scale.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ENV_WITHOUT_SCHEDULER = {k: v for k, v in os.environ.items() if k != "DASK_SCHEDULER_ADDRESS"}


class ExternalCluster:
    """``with ExternalCluster(home, workers=2) as cluster: cluster.address``"""

    def __init__(self, home: Path, workers: int = 2, memory_limit: str = "0"):
        self.home, self.workers, self.memory_limit = Path(home), workers, memory_limit
        self.processes: list[subprocess.Popen] = []
        self.address = ""

    def __enter__(self) -> ExternalCluster:
        self.home.mkdir(parents=True, exist_ok=True)
        scheduler_file = self.home / "scheduler.json"
        scheduler_file.unlink(missing_ok=True)
        dask = [sys.executable, "-m", "dask"]
        self._start([*dask, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                     "--scheduler-file", str(scheduler_file)])
        for _ in range(600):
            if scheduler_file.exists() and scheduler_file.stat().st_size:
                break
            time.sleep(0.1)
        self.address = json.loads(scheduler_file.read_text())["address"]
        for _ in range(self.workers):
            self._start([*dask, "worker", self.address, "--nthreads", "1", "--nworkers", "1", "--no-dashboard",
                         "--memory-limit", self.memory_limit, "--local-directory", str(self.home)])
        from distributed import Client

        with Client(self.address, timeout="60s") as client:
            client.wait_for_workers(self.workers, timeout=180)
        return self

    def _start(self, command: list[str]) -> None:
        self.processes.append(subprocess.Popen(command, cwd=self.home, env=ENV_WITHOUT_SCHEDULER,
                                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    def worker_pids(self) -> list[int]:
        """Process ids of the workers (the processes the nannies started)."""
        import psutil

        return [child.pid for p in self.processes[1:] for child in psutil.Process(p.pid).children(recursive=True)]

    def __exit__(self, *exc) -> None:
        for process in self.processes[::-1]:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
