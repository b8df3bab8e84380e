"""What a run learns and how it is scored: classification (simple labels), regression (weaver's ``labels.type:
custom``, its regression mode), or both (classes plus jetstore's ``labels.targets``).

The loss is the network file's ``get_loss`` (weaver: cross entropy when it has none) for the main task, and a
Huber loss for regression targets beside classes (times ``--regression-weight``). Metrics: loss and accuracy;
per regression target the bias (mean of prediction − truth), the resolution (its standard deviation) and the
robust resolution (half the 16–84% interval of the residuals)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.nn import functional

from jetstore.config.weaver import TrainingConfig
from jetstore.errors import SchemaError

from .network import LABEL


@dataclass(frozen=True)
class Objective:
    classes: tuple[str, ...]  # label columns (empty for pure regression)
    targets: tuple[str, ...]  # regression targets: custom labels, or labels.targets beside the classes
    main_loss: Callable | None = None  # the network file's get_loss
    regression_weight: float = 1.0

    @classmethod
    def for_config(cls, config: TrainingConfig, regression_mode: bool, main_loss: Callable | None = None,
                   regression_weight: float = 1.0) -> Objective:
        if regression_mode and config.label_type != "custom":
            raise SchemaError(f"{config.source}: --regression-mode needs labels.type: custom (the regression "
                              "targets); for targets beside classes use labels.targets")
        if config.label_type == "custom" and not config.custom_labels:
            raise SchemaError(f"{config.source}: labels.type custom needs at least one label in labels.value")
        classes = () if config.label_type == "custom" else tuple(config.label_columns)
        return cls(classes, tuple(config.custom_labels), main_loss, regression_weight)

    @property
    def regression(self) -> bool:
        """Pure regression (weaver's regression mode)."""
        return not self.classes

    @property
    def class_names(self) -> list[str]:
        return [c.removeprefix("label_") for c in self.classes]

    def target_values(self, batch: Mapping[str, torch.Tensor], count: int) -> torch.Tensor:
        """The first ``count`` targets of a batch, ``[N, count]`` (weaver's regression uses the first)."""
        return torch.stack([batch[t].float() for t in self.targets[:count]], dim=1)

    def loss(self, logits: torch.Tensor | None, regression: torch.Tensor | None,
             batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        if self.regression:
            target = self.target_values(batch, regression.shape[1])
            predicted = regression.float()
            if predicted.shape[1] == 1:  # weaver's shapes: model_output.squeeze() against the first label
                predicted, target = predicted[:, 0], target[:, 0]
            return (self.main_loss or functional.huber_loss)(predicted, target)
        loss = (self.main_loss or functional.cross_entropy)(logits.float(), batch[LABEL])
        if regression is not None and self.targets:
            target = self.target_values(batch, regression.shape[1])
            loss = loss + self.regression_weight * functional.huber_loss(regression.float(), target)
        return loss

    def tally(self, keep: bool = False) -> Tally:
        return Tally(self, keep)


@dataclass
class Tally:
    """Sums of a stretch of batches (a logging window, an epoch, a validation); with ``keep``, the scores,
    labels and residuals too (for AUCs and quantiles)."""

    objective: Objective
    keep: bool = False
    loss: float = 0.0
    batches: int = 0
    jets: int = 0
    correct: int = 0
    residual_sum: np.ndarray | None = None
    residual_squares: np.ndarray | None = None
    scores: list[np.ndarray] = field(default_factory=list)
    labels: list[np.ndarray] = field(default_factory=list)
    residuals: list[np.ndarray] = field(default_factory=list)

    def add(self, loss: torch.Tensor, logits: torch.Tensor | None, regression: torch.Tensor | None,
            batch: Mapping[str, torch.Tensor]) -> None:
        self.loss += float(loss.detach())
        self.batches += 1
        objective = self.objective
        if logits is not None and objective.classes:
            labels = batch[LABEL]
            self.jets += len(labels)
            self.correct += int((logits.argmax(dim=1) == labels).sum())
            if self.keep:
                self.scores.append(torch.softmax(logits.detach().float(), dim=1).cpu().numpy())
                self.labels.append(labels.cpu().numpy())
        if regression is not None and objective.targets:
            residual = (regression.detach().float() - objective.target_values(batch, regression.shape[1])).cpu()
            residual = residual.numpy().astype(np.float64)
            if objective.regression:
                self.jets += len(residual)
            self.residual_sum = residual.sum(axis=0) + (0 if self.residual_sum is None else self.residual_sum)
            self.residual_squares = (residual**2).sum(axis=0) + (
                0 if self.residual_squares is None else self.residual_squares)
            if self.keep:
                self.residuals.append(residual)

    def state(self) -> dict:
        """The sums (for a checkpoint taken mid-epoch)."""
        return {"loss": self.loss, "batches": self.batches, "jets": self.jets, "correct": self.correct,
                "residual_sum": None if self.residual_sum is None else self.residual_sum.tolist(),
                "residual_squares": None if self.residual_squares is None else self.residual_squares.tolist()}

    def restore(self, state: dict) -> None:
        self.loss, self.batches, self.jets, self.correct = (state[k] for k in ("loss", "batches", "jets", "correct"))
        for key in ("residual_sum", "residual_squares"):
            setattr(self, key, None if state[key] is None else np.asarray(state[key], np.float64))

    def metrics(self) -> dict[str, float]:
        out: dict[str, float] = {}
        if not self.batches:
            return out
        out["loss"] = self.loss / self.batches
        if self.objective.classes and self.jets:
            out["accuracy"] = self.correct / self.jets
        if self.residuals:
            from .evaluate import regression_metrics

            out.update(regression_metrics(np.concatenate(self.residuals), self.objective.targets))
        elif self.residual_sum is not None and self.jets:
            mean = self.residual_sum / self.jets
            spread = np.sqrt(np.maximum(self.residual_squares / self.jets - mean**2, 0))
            for i, name in enumerate(self.objective.targets[:len(mean)]):
                out[f"{name}_bias"], out[f"{name}_resolution"] = float(mean[i]), float(spread[i])
        if self.scores:
            from .evaluate import performance

            found = performance(np.concatenate(self.scores), np.concatenate(self.labels), self.objective.class_names)
            out.update({k: v for k, v in found.items() if k.startswith("auc_")})
        return out
