"""The built-in network: weaver-core's Particle Transformer as the backbone, with a classification head and an
optional regression head (e.g. the jet pT response from custom labels), as the seed's AK4 tagger."""

from __future__ import annotations

import torch
from torch import nn
from weaver.nn.model.ParticleTransformer import ParticleTransformer

SIZES = {
    # embed dims, pair embed dims, heads, layers, class-attention layers
    "tiny": ((32, 64, 32), (16, 16, 16), 2, 1, 1),
    "small": ((64, 128, 64), (32, 32, 32), 4, 3, 1),
    "full": ((128, 512, 128), (64, 64, 64), 8, 8, 2),  # ParT's published configuration
}


class Tagger(nn.Module):
    """ParT encoder + class-attention pooling → (class logits or None, regression outputs or None)."""

    def __init__(self, input_dim: int, num_classes: int, num_targets: int = 0, size: str = "small",
                 use_amp: bool = False):
        super().__init__()
        embed, pair, heads, layers, cls_layers = SIZES[size]
        self.backbone = ParticleTransformer(
            input_dim=input_dim, num_classes=None, pair_input_dim=4, embed_dims=embed, pair_embed_dims=pair,
            num_heads=heads, num_layers=layers, num_cls_layers=cls_layers, fc_params=None, use_amp=use_amp,
            trim=True,
        )
        width = embed[-1]
        self.classifier = nn.Linear(width, num_classes) if num_classes else None
        self.regressor = nn.Linear(width, num_targets) if num_targets else None

    def forward(self, features, vectors, mask) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        embedding = self.backbone(features, v=vectors, mask=mask)
        logits = self.classifier(embedding) if self.classifier is not None else None
        return logits, (self.regressor(embedding) if self.regressor is not None else None)

    def no_weight_decay(self) -> set[str]:
        return {f"backbone.{name}" for name in self.backbone.no_weight_decay()}
