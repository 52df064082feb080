"""Anchor embedding: separate MLPs for position, size, yaw and velocity, concatenated (Sparse4D v3's decoupled
encoder, ``mode="cat"``), so no part of the box drowns out another in the embedding."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .. import geometry


def linear_relu_ln(dims: int, in_loops: int, out_loops: int, input_dims: int | None = None) -> list[nn.Module]:
    """Upstream's MLP brick: ``out_loops`` times (``in_loops`` x [Linear, ReLU], then LayerNorm)."""
    layers: list[nn.Module] = []
    current = dims if input_dims is None else input_dims
    for _ in range(out_loops):
        for _ in range(in_loops):
            layers += [nn.Linear(current, dims), nn.ReLU(inplace=True)]
            current = dims
        layers.append(nn.LayerNorm(dims))
    return layers


class AnchorEncoder(nn.Module):
    """``[..., 11]`` anchors -> ``[..., sum(dims)]`` embeddings."""

    def __init__(self, dims: tuple[int, int, int, int], out_loops: int = 4):
        super().__init__()
        pos, size, yaw, vel = dims
        self.pos_fc = nn.Sequential(*linear_relu_ln(pos, 1, out_loops, 3))
        self.size_fc = nn.Sequential(*linear_relu_ln(size, 1, out_loops, 3))
        self.yaw_fc = nn.Sequential(*linear_relu_ln(yaw, 1, out_loops, 2))
        self.vel_fc = nn.Sequential(*linear_relu_ln(vel, 1, out_loops, 3))

    def forward(self, anchor: Tensor) -> Tensor:
        return torch.cat(
            [
                self.pos_fc(anchor[..., geometry.X : geometry.Z + 1]),
                self.size_fc(anchor[..., geometry.LOG_L : geometry.LOG_H + 1]),
                self.yaw_fc(anchor[..., geometry.SIN_YAW : geometry.COS_YAW + 1]),
                self.vel_fc(anchor[..., geometry.ANCHOR_VEL]),
            ],
            dim=-1,
        )
