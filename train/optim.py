"""Optimizers and learning-rate schedules, with the state an exact resume needs.

``ranger`` is weaver-core's own (Lookahead(RAdam), betas 0.95/0.999, eps 1e-5, alpha 0.5, k 6); the others
are torch's. A schedule is a factor of the step alone (:class:`Schedule`), so a resumed run follows the same
curve and a changed ``--lr`` or schedule applies from the step it resumes at.

``--schedule-mode per-step`` (default): an optional linear warm-up (``--warmup-steps``) before any schedule, then
``flat+decay`` (flat, then exponential decay to 1% from ``decay_start``: the per-step form of weaver's per-epoch
staircase), ``cosine`` (to 0), ``one-cycle`` (torch's OneCycleLR: cosine up from 1/25 of the peak over the warm-up,
30% of the steps by default, then cosine down to 1/25e4), ``steps`` (×0.1 at a third and two thirds of the
steps) or ``none``. ``--schedule-mode weaver``: weaver-core 0.5.3's formulas exactly: ``flat+decay`` and ``steps``
change once per epoch (``flat+decay``: ×0.01^(1/n) at each of the last n = 30% of the epochs), the warm-up applies
only to ``flat+linear``, ``flat+cos`` and ``warmup+cos`` (weaver's per-step schedules, the same in both modes).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from weaver.utils.nn.optimizer.lookahead import Lookahead
from weaver.utils.nn.optimizer.ranger import Ranger

from .network import parameter_groups
from .options import TrainOptions

ONE_CYCLE_START, ONE_CYCLE_END = 1 / 25, 1 / 25e4  # torch OneCycleLR's div_factor and final_div_factor
ONE_CYCLE_WARMUP = 0.3


def make_optimizer(name: str, model: nn.Module, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    groups = parameter_groups(model, weight_decay)
    if name == "ranger":
        return Ranger(groups, lr=lr)
    if name == "lookahead-adamw":
        return Lookahead(torch.optim.AdamW(groups, lr=lr), alpha=0.5, k=6)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=(0.95, 0.999))  # weaver's betas
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=0.9)
    return {"adam": torch.optim.Adam, "radam": torch.optim.RAdam}[name](groups, lr=lr)


def inner(optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """The optimizer whose learning rate a schedule sets (Lookahead's inner one)."""
    return optimizer.optimizer if isinstance(optimizer, Lookahead) else optimizer


def optimizer_state(optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """weaver-core's Lookahead.state_dict() keeps only the inner optimizer; exact resume also needs the slow
    weights and the step counter."""
    if not isinstance(optimizer, Lookahead):
        return {"inner": optimizer.state_dict()}
    params = [p for group in optimizer.param_groups for p in group["params"]]
    return {"inner": optimizer.state_dict(), "step_counter": optimizer.step_counter,
            "slow": [optimizer.state[p]["cached_params"].clone() for p in params]}


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    optimizer.load_state_dict(state["inner"])
    if isinstance(optimizer, Lookahead):
        optimizer.step_counter = state["step_counter"]
        params = [p for group in optimizer.param_groups for p in group["params"]]
        for parameter, slow in zip(params, state["slow"], strict=True):
            optimizer.state[parameter]["cached_params"].copy_(slow)


def warmup_length(warmup: float, total: int) -> int:
    """Warm-up steps: ``warmup`` steps, or that fraction of ``total`` when below 1 (weaver's rule)."""
    return int(warmup * total) if warmup < 1 else int(warmup)


class Schedule:
    """The learning rate of every step: ``--lr`` times the schedule's factor, a pure function of the step (a
    resume, or a changed ``--lr`` / schedule, follows from the step alone)."""

    def __init__(self, options: TrainOptions, total: int, steps_per_epoch: int):
        self.base = options.lr
        self.factor = schedule(options.lr_scheduler, total, options.warmup_steps, options.decay_start,
                               options.schedule_mode, steps_per_epoch)

    def lr(self, step: int) -> float:
        return self.base * self.factor(step)

    def apply(self, optimizer: torch.optim.Optimizer, step: int) -> None:
        for group in optimizer.param_groups:
            group["lr"] = self.lr(step)


def schedule(name: str, total: int, warmup: float = 0.0, decay_start: float = 0.7, mode: str = "per-step",
             steps_per_epoch: int = 1) -> Callable[[int], float]:
    """The learning-rate factor of each step (see the module docstring)."""
    total = max(total, 1)
    ramp = warmup_length(warmup, total)
    if name in WEAVER_PER_STEP:
        return _weaver_per_step(name, total, ramp)
    if name == "one-cycle":
        return _one_cycle(total, 0 if mode == "weaver" else ramp)
    if mode == "weaver" and name in ("flat+decay", "steps"):
        return _weaver_per_epoch(name, total, max(steps_per_epoch, 1))
    ramp = 0 if mode == "weaver" else ramp  # weaver warms up only flat+linear, flat+cos and warmup+cos

    def factor(step: int) -> float:
        if step < ramp:
            return (step + 1) / ramp
        if name == "cosine":
            return _cosine(1.0, 0.0, (step - ramp) / max(total - ramp, 1))
        if name == "flat+decay":
            start = max(int(total * decay_start), ramp)
            return 1.0 if step < start else math.exp(math.log(0.01) * (step - start) / max(total - start, 1))
        if name == "steps":  # weaver's ×0.1 at a third and at two thirds, per step
            return 0.1 ** ((step >= round(total / 3)) + (step >= 2 * round(total / 3)))
        return 1.0
    return factor


WEAVER_PER_STEP = ("flat+linear", "flat+cos", "warmup+cos")


def _weaver_per_step(name: str, total: int, ramp: int) -> Callable[[int], float]:
    """weaver-core 0.5.3's per-step schedules (its ``init_opt``), the same in both modes."""
    flat = total * 0.7 - 1

    def factor(step: int) -> float:
        if step < ramp:
            return step / ramp
        if name == "warmup+cos":
            progress = (step - ramp) / max(1, total - ramp)
            return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))
        if step <= flat:
            return 1.0
        pct = (step - flat) / (total - flat)
        return max(0.001, 1 - pct if name == "flat+linear" else 0.5 * (math.cos(math.pi * pct) + 1))
    return factor


def _weaver_per_epoch(name: str, total: int, steps_per_epoch: int) -> Callable[[int], float]:
    """weaver-core's staircases, changed once per epoch: flat+decay ×0.01^(1/n) at each of the last n = 30% of the
    epochs; steps ×0.1 at a third and two thirds of the epochs."""
    epochs = -(-total // steps_per_epoch)
    if name == "flat+decay":
        decay_epochs = max(1, int(epochs * 0.3))
        first, gamma = epochs - decay_epochs, 0.01 ** (1.0 / decay_epochs)
        return lambda step: gamma ** max(0, step // steps_per_epoch - first + 1)
    third = round(epochs / 3)
    return lambda step: 0.1 ** ((step // steps_per_epoch >= third) + (step // steps_per_epoch >= 2 * third))


def _one_cycle(total: int, ramp: int) -> Callable[[int], float]:
    """torch's OneCycleLR (as weaver): cosine up from 1/25 of the peak over ``ramp`` steps (30% by default),
    then down to 1/25e4."""
    peak = (ramp or ONE_CYCLE_WARMUP * total) - 1

    def factor(step: int) -> float:
        if step <= peak:
            return _cosine(ONE_CYCLE_START, 1.0, step / max(peak, 1))
        return _cosine(1.0, ONE_CYCLE_END, (step - peak) / max(total - 1 - peak, 1))
    return factor


def _cosine(begin: float, end: float, progress: float) -> float:
    return end + (begin - end) * 0.5 * (1 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))
