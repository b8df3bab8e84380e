"""Training metrics as JSON lines and TensorBoard scalars."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any


class MetricsLog:
    def __init__(self, directory: str | Path, enabled: bool = True):
        self.enabled = enabled
        self.directory = Path(directory)
        self.writer = None
        if enabled:
            self.directory.mkdir(parents=True, exist_ok=True)
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.directory / "tensorboard"))
            self.lines = open(self.directory / "metrics.jsonl", "a")  # noqa: SIM115 (kept open for the run)

    def log(self, step: int, values: dict[str, Any]) -> None:
        if not self.enabled:
            return
        record = {"step": step, "time": time.time(), **values}
        self.lines.write(json.dumps(record) + "\n")
        self.lines.flush()
        for key, value in values.items():
            if isinstance(value, int | float):
                self.writer.add_scalar(key, value, step)

    def close(self) -> None:
        if self.enabled:
            self.lines.close()
            self.writer.close()
