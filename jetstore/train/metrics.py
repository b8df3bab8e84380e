"""Training metrics as JSON lines and TensorBoard scalars: ``metrics.jsonl`` per logging window (x: step) and
``epochs.jsonl`` per epoch (training and validation, x: epoch; TensorBoard tags ``epoch/<name>``).

A resumed run first drops what the interrupted one logged after its checkpoint (lines of later steps and
epochs, TensorBoard events of later steps), so every step and epoch has one line."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

STEPS, EPOCHS = "metrics.jsonl", "epochs.jsonl"


def _truncate(path: Path, key: str, keep_below: int) -> None:
    """Keep the lines of ``path`` whose ``key`` is below ``keep_below`` (and drop a torn last line)."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)[key] < keep_below:
                kept.append(line)
        except (ValueError, KeyError, TypeError):
            continue
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text("".join(f"{line}\n" for line in kept))
    partial.replace(path)


class MetricsLog:
    """The run's metric files; ``step`` and ``epoch``: where the run (re)starts."""

    def __init__(self, directory: str | Path, enabled: bool = True, step: int = 0, epoch: int = 0):
        self.enabled = enabled
        self.directory = Path(directory)
        self.writer: Any = None  # a SummaryWriter while enabled (tensorboard is imported only then)
        if enabled:
            self.directory.mkdir(parents=True, exist_ok=True)
            _truncate(self.directory / STEPS, "step", step + 1)
            _truncate(self.directory / EPOCHS, "epoch", epoch)
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.directory / "tensorboard"), purge_step=step + 1 if step else None)
            self.lines = open(self.directory / STEPS, "a")  # noqa: SIM115 (kept open for the run)
            self.epochs = open(self.directory / EPOCHS, "a")  # noqa: SIM115

    def _write(self, handle, x_name: str, x: int, values: dict[str, Any], prefix: str = "") -> None:
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
