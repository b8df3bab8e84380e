"""Helpers shared by the benchmark scripts (run as ``python bench/<name>.py``, which puts this folder on the
path)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path


def copies_of(files: list[str], copies: int, directory: Path) -> list[str]:
    """``copies`` sets of symlinks to ``files`` under distinct names in ``directory`` (bigger inputs for free)."""
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    for index in range(copies):
        for path in files:
            link = directory / f"copy{index:04d}_{Path(path).name}"
            if not link.exists():
                link.symlink_to(path)
            out.append(str(link))
    return out


def best_of(repeat: int, function: Callable[[], object], clock: Callable[[], float] = time.perf_counter) -> float:
    """The shortest of ``repeat`` timings of ``function`` by ``clock`` (wall by default; ``time.process_time``
    for CPU seconds)."""
    times = []
    for _ in range(repeat):
        start = clock()
        function()
        times.append(clock() - start)
    return min(times)
