"""What a run learns and how it is scored: classification (simple labels), regression (weaver's ``labels.type:
custom``, its regression mode), or both (classes plus jetstore's ``labels.targets``).

The loss is the network file's ``get_loss`` (weaver: cross entropy when it has none) for the main task, and a
Huber loss for regression targets beside classes (times ``--regression-weight``). Metrics: loss and accuracy;
per regression target the bias (mean of prediction − truth), the resolution (its standard deviation) and the
robust resolution (half the 16–84% interval of the residuals)."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.nn import functional

from jetstore.config.weaver import TrainingConfig
from jetstore.errors import SchemaError
from jetstore.train.network import LABEL


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
             batch: Mapping[str, torch.Tensor], reduction: str = "mean") -> torch.Tensor | None:
        """The loss of a batch; with ``reduction="none"`` one per jet (None when the network file's own loss
        cannot give it: a plain function rather than a torch loss module)."""
        per_jet = reduction == "none"
        if self.regression:
            assert regression is not None  # a regression network outputs it
            target = self.target_values(batch, regression.shape[1])
            predicted = regression.float()
            if predicted.shape[1] == 1:  # weaver's shapes: model_output.squeeze() against the first label
                predicted, target = predicted[:, 0], target[:, 0]
            loss = _reduced(self.main_loss, functional.huber_loss, predicted, target, reduction)
            return loss.reshape(len(loss), -1).mean(dim=1) if per_jet and loss is not None else loss
        assert logits is not None  # a classifier outputs them
        loss = _reduced(self.main_loss, functional.cross_entropy, logits.float(), batch[LABEL], reduction)
        if loss is not None and regression is not None and self.targets:
            target = self.target_values(batch, regression.shape[1])
            huber = functional.huber_loss(regression.float(), target, reduction=reduction)
            loss = loss + self.regression_weight * (huber.mean(dim=1) if per_jet else huber)
        return loss

    def tally(self, keep: bool = False) -> Tally:
        return Tally(self, keep)


def _reduced(own: Callable | None, default: Callable, prediction: torch.Tensor, target: torch.Tensor,
             reduction: str) -> torch.Tensor | None:
    """``own`` (a network file's loss) or ``default`` with this reduction."""
    if own is None:
        return default(prediction, target, reduction=reduction)
    if reduction == "mean":
        return own(prediction, target)
    if isinstance(own, torch.nn.modules.loss._Loss):  # torch's loss modules: the same loss, per jet
        per_jet = copy.copy(own)
        per_jet.reduction = reduction
        return per_jet(prediction, target)
    return None


SUMS = ("loss", "loss_weight", "batches", "jets", "weight", "correct")
KEPT = ("scores", "labels", "residuals", "weights")


@dataclass
class Tally:
    """Sums of a stretch of batches (a logging window, an epoch, a validation), every jet with a weight (1
    unless given: validation weighs jets as the training samples them); with ``keep``, the scores, labels,
    residuals and weights too (for AUCs and quantiles). Loss: the weighted mean over jets where the loss gives
    one per jet, else over batches."""

    objective: Objective
    keep: bool = False
    loss: float = 0.0
    loss_weight: float = 0.0
    batches: int = 0
    jets: int = 0
    weight: float = 0.0
    correct: float = 0.0
    residual_sum: np.ndarray | None = None
    residual_squares: np.ndarray | None = None
    scores: list[np.ndarray] = field(default_factory=list)
    labels: list[np.ndarray] = field(default_factory=list)
    residuals: list[np.ndarray] = field(default_factory=list)
    weights: list[np.ndarray] = field(default_factory=list)

    def add(self, loss: torch.Tensor, logits: torch.Tensor | None, regression: torch.Tensor | None,
            batch: Mapping[str, torch.Tensor], weights: torch.Tensor | None = None,
            per_jet: torch.Tensor | None = None) -> None:
        """One batch: its mean ``loss``; with ``weights``, the jets' weights and (if the loss gives them) their
        losses ``per_jet``."""
        objective = self.objective
        n = len(next(iter(batch.values())))
        w = np.ones(n) if weights is None else np.asarray(weights, np.float64)
        self.batches += 1
        if weights is None:
            self.loss += float(loss.detach())
            self.loss_weight += 1
        elif per_jet is not None:
            self.loss += float((per_jet.detach().double().cpu() * torch.from_numpy(w)).sum())
            self.loss_weight += float(w.sum())
        else:
            self.loss += float(loss.detach()) * float(w.sum())
            self.loss_weight += float(w.sum())
        if logits is not None and objective.classes:
            labels = batch[LABEL]
            self.jets += n
            self.weight += float(w.sum())
            self.correct += float((w * (logits.argmax(dim=1) == labels).cpu().numpy()).sum())
            if self.keep:
                self.scores.append(torch.softmax(logits.detach().float(), dim=1).cpu().numpy())
                self.labels.append(labels.cpu().numpy())
        if regression is not None and objective.targets:
            difference = regression.detach().float() - objective.target_values(batch, regression.shape[1])
            residual = difference.cpu().numpy().astype(np.float64)
            if objective.regression:
                self.jets += n
                self.weight += float(w.sum())
            self.residual_sum = (w[:, None] * residual).sum(axis=0) + (
                0 if self.residual_sum is None else self.residual_sum)
            self.residual_squares = (w[:, None] * residual**2).sum(axis=0) + (
                0 if self.residual_squares is None else self.residual_squares)
            if self.keep:
                self.residuals.append(residual)
        if self.keep and weights is not None:
            self.weights.append(w)

    def state(self) -> dict:
        """The sums (for a checkpoint taken mid-epoch, and for merging ranks)."""
        return {**{k: getattr(self, k) for k in SUMS},
                "residual_sum": None if self.residual_sum is None else self.residual_sum.tolist(),
                "residual_squares": None if self.residual_squares is None else self.residual_squares.tolist()}

    def restore(self, state: dict) -> None:
        for key in SUMS:
            setattr(self, key, state[key])
        for key in ("residual_sum", "residual_squares"):
            setattr(self, key, None if state[key] is None else np.asarray(state[key], np.float64))

    def parts(self) -> dict:
        """The sums and kept arrays, as plain data (what ranks exchange)."""
        return {**self.state(), **{key: getattr(self, key) for key in KEPT}}

    def merge(self, parts: list[dict]) -> None:
        """Add the :meth:`parts` of tallies of the same stretch (every rank's)."""
        for part in parts:
            for key in SUMS:
                setattr(self, key, getattr(self, key) + part[key])
            for key in ("residual_sum", "residual_squares"):
                mine, theirs = getattr(self, key), part[key]
                theirs = None if theirs is None else np.asarray(theirs, np.float64)
                setattr(self, key, theirs if mine is None else mine if theirs is None else mine + theirs)
            for key in KEPT:
                getattr(self, key).extend(part[key])

    def metrics(self) -> dict[str, float]:
        out: dict[str, float] = {}
        if not self.batches:
            return out
        out["loss"] = self.loss / self.loss_weight if self.loss_weight else float("nan")
        out["jets"] = self.jets
        if self.objective.classes and self.weight:
            out["accuracy"] = self.correct / self.weight
        weights = np.concatenate(self.weights) if self.weights else None
        if self.residuals:
            from jetstore.train.evaluate import regression_metrics

            out.update(regression_metrics(np.concatenate(self.residuals), self.objective.targets, weights))
        elif self.residual_sum is not None and self.residual_squares is not None and self.weight:
            mean = self.residual_sum / self.weight
            spread = np.sqrt(np.maximum(self.residual_squares / self.weight - mean**2, 0))
            for i, name in enumerate(self.objective.targets[:len(mean)]):
                out[f"{name}_bias"], out[f"{name}_resolution"] = float(mean[i]), float(spread[i])
        if self.scores:
            from jetstore.train.evaluate import performance

            found = performance(np.concatenate(self.scores), np.concatenate(self.labels), self.objective.class_names,
                                weights)
            out.update({k: v for k, v in found.items() if k.startswith("auc_")})
        return out
