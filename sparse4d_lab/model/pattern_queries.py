"""PaQ-DETR's (arXiv 2603.06917) pattern-sharing dynamic queries: the model half of PaQ (the assignment half is in
``supervision/paq.py``).

From the paper: a small set of learned patterns mixed into every query by softmax weights that a two-layer MLP
computes from pooled image features (gradient sharing across queries), and a diversity loss against pattern collapse.
This project's 3D adaptation: the descriptor is the mean of globally pooled FPN maps over levels and cameras; the
per-query weights are ``softmax(slot logits + image recipe)``, a per-anchor-slot prior plus an image-dependent
recipe, which keeps the generator under 5 % of the model where an MLP emitting ``A x m`` weights would not.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class PatternQueries(nn.Module):
    """The model's query generator: ``(feature_maps, base_features [A, D]) -> [B, A, D]`` fresh instance features."""

    def __init__(
        self,
        num_anchor: int,
        embed_dims: int,
        feature_channels: int,
        num_patterns: int = 150,
        hidden: int = 128,
        diversity_weight: float = 0.2,
    ):
        super().__init__()
        self.patterns = nn.Parameter(torch.randn(num_patterns, embed_dims) / math.sqrt(embed_dims))
        self.slot_logits = nn.Parameter(torch.randn(num_anchor, num_patterns) * 0.1)
        self.recipe = nn.Sequential(
            nn.Linear(feature_channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, num_patterns)
        )
        self.diversity_weight = diversity_weight

    def forward(self, feature_maps: list[Tensor], base_features: Tensor) -> Tensor:
        # Global descriptor: each level [B, N, C, h, w] pooled over space and cameras, then averaged over levels.
        descriptor = torch.stack([f.mean(dim=(-1, -2)).mean(1) for f in feature_maps]).mean(0)
        weights = (self.slot_logits.unsqueeze(0) + self.recipe(descriptor).unsqueeze(1)).softmax(-1)  # [B, A, m]
        return weights @ self.patterns

    def diversity_loss(self) -> Tensor:
        """Weighted mean |cosine| over distinct pattern pairs: 0 when the patterns are orthogonal."""
        unit = F.normalize(self.patterns, dim=-1)
        cos = unit @ unit.T
        m = len(unit)
        off_diagonal = cos[~torch.eye(m, dtype=torch.bool, device=cos.device)]
        return self.diversity_weight * off_diagonal.abs().mean() if m > 1 else cos.sum() * 0.0
