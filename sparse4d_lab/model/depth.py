"""Optional dense depth branch (Sparse4D v2/v3): an auxiliary per-pixel depth head on the first FPN levels that
teaches the image features geometry, trained only when a batch carries depth maps.

Depth is predicted for a reference focal length and rescaled by each camera's own focal length, so cameras with
different intrinsics share one head; the focal length is read from the projection matrix (sqrt |det| of its 3x3
block = sqrt(fx fy) for a pinhole camera with a rotation extrinsic).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def focal_length(projection_mat: Tensor) -> Tensor:
    """``[B, N, 4, 4]`` -> ``[B, N]`` geometric-mean focal length in pixels."""
    return torch.linalg.det(projection_mat[..., :3, :3].double()).abs().sqrt().to(projection_mat.dtype)


class DenseDepth(nn.Module):
    def __init__(self, embed_dims: int, num_layers: int, equal_focal: float, max_depth: float, loss_weight: float):
        super().__init__()
        self.heads = nn.ModuleList(nn.Conv2d(embed_dims, 1, 1) for _ in range(num_layers))
        self.equal_focal, self.max_depth, self.loss_weight = equal_focal, max_depth, loss_weight

    def forward(self, feature_maps: list[Tensor], projection_mat: Tensor) -> list[Tensor]:
        """Depth maps ``[B, N, h, w]`` in metres for the first ``num_layers`` levels."""
        scale = (focal_length(projection_mat) / self.equal_focal)[..., None, None]
        depths = []
        for head, features in zip(self.heads, feature_maps, strict=False):
            B, N = features.shape[:2]
            depths.append(head(features.flatten(0, 1)).exp().reshape(B, N, *features.shape[-2:]) * scale)
        return depths

    def loss(self, depths: list[Tensor], target: Tensor) -> Tensor:
        """Mean L1 over pixels with a depth (> 0), target ``[B, N, H, W]`` sampled at each level's resolution."""
        total = depths[0].new_zeros(())
        for pred in depths:
            sampled = F.interpolate(target.flatten(0, 1)[:, None].to(pred), size=pred.shape[-2:], mode="nearest")
            sampled = sampled.reshape(pred.shape)
            valid = (sampled > 0) & pred.isfinite()
            error = (pred.clamp(0, self.max_depth) - sampled).abs()[valid].sum()
            total = total + error / max(1, int(valid.sum()) * len(depths))
        return total * self.loss_weight
