"""Where the built-in ParT's BatchNorms take their statistics from when training (``--batchnorm``).

weaver-core's ParT normalises its particle inputs (``embed.input_bn``) and its pair features (the BatchNorms of
``pair_embed``) with ``nn.BatchNorm1d``. When training, the input BatchNorm's batch statistics count every
position of the (trimmed) batch, padded ones included, and all of them follow the batch's jets, whose
multiplicity and pT range are narrow in a bucketed batch (``--bucket``); evaluation uses their running averages.
The pair BatchNorms already see real pairs only (weaver-core embeds the pairs of real particles sparsely).

* ``batch``: weaver-core's BatchNorms as they are;
* ``masked``: the input BatchNorm's batch statistics (and so its running ones) count real particles only;
* ``running``: every BatchNorm normalises with its running statistics in training too (the input one's
  updated from real particles only; a cumulative average over the first ``1 / momentum`` batches, then the
  usual exponential one), so a jet's normalised inputs no longer depend on the other jets of its batch: a
  standardisation learnt on the fly, the same in training and evaluation.

The modules stay ``nn.BatchNorm1d`` with the same parameters and buffers, so weights and checkpoints are as
before; in evaluation they are weaver-core's (running statistics).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from jetstore.train.options import BATCHNORM as MODES


class MaskedBatchNorm1d(nn.BatchNorm1d):
    """``nn.BatchNorm1d`` on ``(N, C, P)`` (or ``(N, C)``) whose training statistics count only the positions of
    ``self.mask`` (``(N, 1, P)``, 1 = real; None: all), and that normalises with its running statistics when
    ``use_running``."""

    mask: torch.Tensor | None
    use_running: bool

    @classmethod
    def replacing(cls, norm: nn.BatchNorm1d, use_running: bool) -> MaskedBatchNorm1d:
        new = cls(norm.num_features, norm.eps, norm.momentum, norm.affine, norm.track_running_stats,
                  device=norm.running_mean.device if norm.running_mean is not None else None)
        new.load_state_dict(norm.state_dict())
        new.train(norm.training)
        new.mask, new.use_running = None, use_running
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mask = self.mask
        self.mask = None  # one forward's mask, never a later one's
        running_mean, running_var, tracked = self.running_mean, self.running_var, self.num_batches_tracked
        if (not self.training or (mask is None and not self.use_running) or running_mean is None
                or running_var is None or tracked is None):
            return super().forward(x)
        dims = (0, 2) if x.dim() == 3 else (0,)
        shape = (1, -1, 1) if x.dim() == 3 else (1, -1)
        weights = mask.to(x.dtype) if mask is not None else torch.ones_like(x[:, :1])
        count = weights.sum(dims).clamp(min=1)
        mean = (x * weights).sum(dims) / count
        var = ((x - mean.view(shape)).square() * weights).sum(dims) / count
        with torch.no_grad():
            tracked.add_(1)
            momentum = self.momentum if self.momentum is not None else 1.0 / float(tracked)
            if self.use_running:  # from the first batch on, not from the initial 0 and 1
                momentum = max(momentum, 1.0 / float(tracked))
            running_mean.lerp_(mean.detach(), momentum)
            running_var.lerp_((var * count / (count - 1).clamp(min=1)).detach(), momentum)
        if self.use_running:
            mean, var = running_mean, running_var
        out = (x - mean.view(shape)) / torch.sqrt(var.view(shape) + self.eps)
        return out * self.weight.view(shape) + self.bias.view(shape) if self.affine else out


def apply(backbone: Any, mode: str) -> None:
    """Set the BatchNorms of weaver-core's ``ParticleTransformer`` ``backbone`` to ``mode`` (:data:`MODES`)."""
    if mode not in MODES:
        raise ValueError(f"batchnorm mode {mode!r}: one of {', '.join(MODES)}")
    if mode == "batch":
        return
    embed = backbone.embed
    if isinstance(embed.input_bn, nn.BatchNorm1d):
        norm = embed.input_bn = MaskedBatchNorm1d.replacing(embed.input_bn, use_running=mode == "running")

        def keep_mask(_module: nn.Module, _inputs: tuple, output: tuple) -> None:
            norm.mask = output[2]  # the trimmer's (x, v, mask, uu): the mask of the positions embed sees

        backbone.trimmer.register_forward_hook(keep_mask)
    if mode == "running" and backbone.pair_embed is not None:
        for sequence in (getattr(backbone.pair_embed, "embed", None), getattr(backbone.pair_embed, "fts_embed", None)):
            if sequence is None:
                continue
            for index, layer in enumerate(sequence):
                if type(layer) is nn.BatchNorm1d:
                    sequence[index] = MaskedBatchNorm1d.replacing(layer, use_running=True)
