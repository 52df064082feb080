"""Per-layer heads: box refinement, classification and quality (centerness, yawness).

Refinement adds to the anchor (position, log size, sin/cos yaw) and predicts velocity as a displacement over the
frame interval, so the same output scale serves any frame rate. Upstream adds that velocity to the anchor's
(``velocity="add"``); TAO's port replaces the anchor's velocity by it (``"replace"``). Classification sees the
instance feature alone; refinement and quality see it plus the anchor embedding, as upstream.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .. import geometry
from .anchor_encoder import linear_relu_ln
from .config import VELOCITY_MODES

PRIOR_PROB = 0.01  # initial foreground probability of the classification bias (focal-loss practice)


class RefinementHead(nn.Module):
    """``(feature, anchor, anchor_embed, dt)`` -> refined anchor ``[B, Q, 11]``, logits ``[B, Q, K]``,
    quality ``[B, Q, 2]`` or None."""

    def __init__(self, embed_dims: int, num_logits: int, with_quality: bool, velocity: str = "add"):
        super().__init__()
        if velocity not in VELOCITY_MODES:
            raise ValueError(f"velocity must be one of {VELOCITY_MODES}, got {velocity!r}")
        self.velocity_from_anchor = velocity == "add"
        self.layers = nn.Sequential(*linear_relu_ln(embed_dims, 2, 2), nn.Linear(embed_dims, geometry.ANCHOR_DIM))
        self.scale = nn.Parameter(torch.ones(geometry.ANCHOR_DIM))  # upstream's learnable per-output Scale
        self.cls_layers = nn.Sequential(*linear_relu_ln(embed_dims, 1, 2), nn.Linear(embed_dims, num_logits))
        nn.init.constant_(self.cls_layers[-1].bias, -math.log((1 - PRIOR_PROB) / PRIOR_PROB))
        self.quality_layers = (
            nn.Sequential(*linear_relu_ln(embed_dims, 1, 2), nn.Linear(embed_dims, 2)) if with_quality else None
        )

    def forward(
        self, feature: Tensor, anchor: Tensor, anchor_embed: Tensor, dt: Tensor
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """``dt [B]``: seconds since the previous frame of each slot (a default where there is none)."""
        joint = feature + anchor_embed
        delta = self.layers(joint) * self.scale
        box = anchor[..., : geometry.ANCHOR_VEL.start] + delta[..., : geometry.ANCHOR_VEL.start]
        velocity = delta[..., geometry.ANCHOR_VEL] / dt.to(delta)[:, None, None]
        if self.velocity_from_anchor:
            velocity = velocity + anchor[..., geometry.ANCHOR_VEL]
        refined = torch.cat([box, velocity], dim=-1)
        cls = self.cls_layers(feature)
        quality = self.quality_layers(joint) if self.quality_layers is not None else None
        return refined, cls, quality
