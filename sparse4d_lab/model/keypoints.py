"""Key points of an anchor box in world coordinates: 7 fixed ones (the centre and +-scale of the box along each
axis) and learnable ones predicted from the instance feature, all rotated by the anchor's yaw.

The fixed points see the box's extent; the learnable ones let each query look where its object's evidence is.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .. import geometry


def fixed_offsets(scale: float) -> Tensor:
    """``[7, 3]`` offsets in box units: centre, then +-scale along length, width and height."""
    offsets = torch.zeros(7, 3)
    for axis in range(3):
        offsets[1 + 2 * axis, axis] = scale
        offsets[2 + 2 * axis, axis] = -scale
    return offsets


class KeyPointsGenerator(nn.Module):
    def __init__(self, embed_dims: int, num_learnable: int, fixed_scale: float = 0.45):
        super().__init__()
        self.register_buffer("fixed", fixed_offsets(fixed_scale), persistent=False)
        self.num_learnable = num_learnable
        self.learnable_fc = nn.Linear(embed_dims, num_learnable * 3) if num_learnable > 0 else None
        if self.learnable_fc is not None:
            nn.init.xavier_uniform_(self.learnable_fc.weight)
            nn.init.zeros_(self.learnable_fc.bias)

    @property
    def num_points(self) -> int:
        return len(self.fixed) + self.num_learnable

    def forward(self, anchor: Tensor, instance_feature: Tensor) -> Tensor:
        """``anchor [B, Q, 11]``, ``instance_feature [B, Q, D]`` -> key points ``[B, Q, P, 3]``."""
        offsets = self.fixed.expand(*anchor.shape[:-1], -1, -1)
        if self.learnable_fc is not None:
            learned = self.learnable_fc(instance_feature).unflatten(-1, (self.num_learnable, 3)).sigmoid() - 0.5
            offsets = torch.cat([offsets, learned], dim=-2)
        return geometry.box_points(geometry.anchor_to_box(anchor), offsets)
