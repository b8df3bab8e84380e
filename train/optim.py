"""Optimizers and learning-rate schedules, with the state an exact resume needs.

``ranger`` is weaver-core's own (Lookahead(RAdam), betas 0.95/0.999, eps 1e-5, alpha 0.5, k 6); the others
are torch's. Schedules are factors of the step alone (``LambdaLR``), so a resumed run follows the same curve:
an optional linear warm-up, then ``flat+decay`` (flat, then exponential decay to 1% from ``decay_start``; the
per-step form of weaver's per-epoch staircase), ``cosine`` (to 0), ``one-cycle`` (cosine up from 1/25 of the
peak over the warm-up, 30% of the steps by default, then cosine down to 1/25e4) or ``none``."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from weaver.utils.nn.optimizer.lookahead import Lookahead
from weaver.utils.nn.optimizer.ranger import Ranger

from .network import parameter_groups

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


def schedule(name: str, total: int, warmup: float = 0.0, decay_start: float = 0.7) -> Callable[[int], float]:
    """The learning-rate factor of each step (see the module docstring)."""
    total = max(total, 1)
    ramp = warmup_length(warmup, total)
    if name == "one-cycle":
        peak = ramp or int(ONE_CYCLE_WARMUP * total)

        def one_cycle(step: int) -> float:
            if step < peak:
                return _cosine(ONE_CYCLE_START, 1.0, step / max(peak, 1))
            return _cosine(1.0, ONE_CYCLE_END, (step - peak) / max(total - peak, 1))
        return one_cycle

    def factor(step: int) -> float:
        if step < ramp:
            return (step + 1) / ramp
        if name == "cosine":
            return _cosine(1.0, 0.0, (step - ramp) / max(total - ramp, 1))
        if name == "flat+decay":
            start = max(int(total * decay_start), ramp)
            return 1.0 if step < start else math.exp(math.log(0.01) * (step - start) / max(total - start, 1))
        return 1.0
    return factor


def _cosine(begin: float, end: float, progress: float) -> float:
    return end + (begin - end) * 0.5 * (1 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))
