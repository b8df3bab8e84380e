"""Training metrics as JSON lines and TensorBoard scalars: ``metrics.jsonl`` per logging window (x: step) and
``epochs.jsonl`` per epoch (training and validation, x: epoch; TensorBoard tags ``epoch/<name>``)."""

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
            self.epochs = open(self.directory / "epochs.jsonl", "a")  # noqa: SIM115

    def _write(self, handle, x_name: str, x: int, values: dict[str, Any], prefix: str = "") -> None:
        if not self.enabled:
            return
        record = {x_name: x, "time": time.time(), **values}
        handle.write(json.dumps(record) + "\n")
        handle.flush()
        for key, value in values.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                self.writer.add_scalar(prefix + key, value, x)

    def log(self, step: int, values: dict[str, Any]) -> None:
        """One logging window's training metrics."""
        if self.enabled:
            self._write(self.lines, "step", step, values)

    def log_epoch(self, epoch: int, values: dict[str, Any]) -> None:
        """One epoch's training and validation metrics."""
        if self.enabled:
            self._write(self.epochs, "epoch", epoch, values, prefix="epoch/")

    def close(self) -> None:
        if self.enabled:
            self.lines.close()
            self.epochs.close()
            self.writer.close()
