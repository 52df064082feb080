"""Deformable feature aggregation (Sparse4D's "efficient deformable aggregation", in plain PyTorch).

Every query projects its key points into every camera, samples every FPN level bilinearly and sums the samples with
weights softmaxed jointly over cameras x levels x points, separately per channel group. Sampling uses
``grid_sample``, or an equivalent product with a sampling matrix that is several times faster on a CPU when the
feature maps are small (the tiny default). Points behind a camera or outside its image contribute nothing: the
CUDA op skips them, and a pure-torch version that only relied on ``grid_sample``'s zero padding would still let
points behind the camera land in the image.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import geometry
from .anchor_encoder import linear_relu_ln
from .config import AGGREGATION_METHODS
from .keypoints import KeyPointsGenerator

OUTSIDE = -1.0  # image-relative coordinate of hidden points: far enough outside [0, 1] to read only padding


def deformable_aggregation(
    feature_maps: list[Tensor],
    key_points: Tensor,
    weights: Tensor,
    projection_mat: Tensor,
    image_wh: Tensor,
    method: str = "grid_sample",
) -> Tensor:
    """Weighted sum of bilinear samples (``align_corners=False``, zero padding) at the projected key points.

    ``feature_maps``: L tensors ``[B, N, C, h, w]``; ``key_points [B, Q, P, 3]`` (world); ``weights
    [B, Q, N, L, P, G]`` with ``C % G == 0``; ``projection_mat [B, N, 4, 4]``; ``image_wh [B, N, 2]`` -> ``[B, Q, C]``.
    ``method`` chooses how, with identical results: ``grid_sample`` scales to any image size; ``matmul`` builds
    each group's sparse sampling matrix densely and multiplies, several times faster on a CPU when the feature
    maps are small (its backward avoids ``grid_sample``'s per-channel scatter).
    """
    Q, P = key_points.shape[1:3]
    pixels, _, in_front = geometry.project_points(key_points.flatten(1, 2), projection_mat)  # [B, N, Q*P, ...]
    visible = geometry.inside_image(pixels, in_front, image_wh)
    uv = pixels / image_wh.to(pixels)[:, :, None]  # image-relative, [0, 1) inside
    uv = torch.where(visible[..., None], uv, uv.new_tensor(OUTSIDE)).unflatten(2, (Q, P))  # [B, N, Q, P, 2]
    visible = visible.unflatten(2, (Q, P))
    if method == "grid_sample":
        return _aggregate_grid_sample(feature_maps, uv, visible, weights)
    if method == "matmul":
        return _aggregate_matmul(feature_maps, uv, visible, weights)
    raise ValueError(f"unknown aggregation method {method!r}; use one of {AGGREGATION_METHODS}")


def _aggregate_grid_sample(feature_maps: list[Tensor], uv: Tensor, visible: Tensor, weights: Tensor) -> Tensor:
    B, N, Q, P = visible.shape
    G = weights.shape[-1]
    grid = (uv * 2 - 1).flatten(0, 1)  # [B*N, Q, P, 2]; -1 and 1 are the outer image borders
    # Weights as [B, N, L, G, 1, Q, P]: multiply and reduce in grid_sample's own layout, no permute of the samples.
    weights = weights.permute(0, 2, 3, 5, 1, 4).unsqueeze(4) * visible.reshape(B, N, 1, 1, 1, Q, P)
    output = uv.new_zeros(B, G, feature_maps[0].shape[2] // G, Q)
    for level, features in enumerate(feature_maps):
        sampled = F.grid_sample(features.flatten(0, 1), grid, align_corners=False)  # [B*N, C, Q, P]
        output = output + (sampled.reshape(B, N, G, -1, Q, P) * weights[:, :, level]).sum(dim=(1, 5))
    return output.permute(0, 3, 1, 2).flatten(2)


def _aggregate_matmul(feature_maps: list[Tensor], uv: Tensor, visible: Tensor, weights: Tensor) -> Tensor:
    """Per (slot, group), a ``[Q, N x pixels of all levels]`` sampling matrix holding attention weight x bilinear
    coefficient for the four neighbours of every key point, times the matching table of features."""
    B, N = visible.shape[:2]
    G = weights.shape[-1]
    table = torch.cat([f.reshape(B, N, G, f.shape[2] // G, -1) for f in feature_maps], dim=-1)  # [B, N, G, c, pix]
    table = table.permute(0, 2, 1, 4, 3).flatten(2, 3)  # [B, G, N*pix, c]
    sizes = tuple((f.shape[-1], f.shape[-2]) for f in feature_maps)
    return SampledProduct.apply(uv, visible, weights, table, sizes).permute(0, 2, 1, 3).flatten(2)


def bilinear_taps(uv: Tensor, visible: Tensor, sizes: tuple[tuple[int, int], ...]) -> tuple[Tensor, ...]:
    """Where (``index`` into a slot's pixel table ``[N x pixels of all levels]``) and how much (``coefficient``)
    each key point reads from its four neighbours on every level, ``align_corners=False``, zero padding.

    ``uv [B, N, Q, P, 2]`` -> ``index [B, Q, 4*L*N*P]`` (entries ordered neighbour, level, camera, point),
    ``coefficient [B, Q, 4, L, N, P]``, and per axis (x, y) the 1-D weights of the two neighbours and their
    derivatives with respect to ``uv``, ``[2, L, B, N, Q, P]``, for the backward pass."""
    N = visible.shape[1]
    size = torch.tensor(sizes, device=uv.device, dtype=uv.dtype).view(-1, 2, 1, 1, 1, 1)
    extent_x, extent_y = size[:, 0], size[:, 1]  # [L, 1, 1, 1, 1]
    area = (extent_x * extent_y).long()
    offset = area.cumsum(0) - area  # where each level starts in a camera's pixel list
    camera = torch.arange(N, device=uv.device).view(1, 1, N, 1, 1) * area.sum()
    axis_weight, axis_slope, cell = [], [], []
    for axis, extent in ((0, extent_x), (1, extent_y)):
        coord = uv[..., axis] * extent - 0.5  # [L, B, N, Q, P] in level pixels
        floor = coord.floor()
        frac = coord - floor
        neighbour = torch.stack([floor, floor + 1])  # [2, L, B, N, Q, P]
        inside = (neighbour >= 0) & (neighbour < extent)
        axis_weight.append(torch.stack([1 - frac, frac]) * inside)
        axis_slope.append(torch.stack([-extent * inside[0], extent * inside[1]]))  # d weight / d uv
        cell.append(torch.minimum(neighbour.clamp_min(0), extent - 1).long())
    # The 4 neighbours as (y, x) pairs: [2, 2, L, B, N, Q, P] -> [4, L, B, N, Q, P].
    coefficient = (axis_weight[1][:, None] * axis_weight[0][None] * visible).flatten(0, 1)
    index = (cell[1][:, None] * extent_x.long() + cell[0][None] + offset + camera).flatten(0, 1)
    index = index.permute(2, 4, 0, 1, 3, 5).flatten(2)  # [B, Q, 4*L*N*P]
    return index, coefficient.permute(2, 4, 0, 1, 3, 5), axis_weight, axis_slope


class SampledProduct(torch.autograd.Function):
    """``sampling matrix(uv, weights) @ table`` -> ``[B, G, Q, c]``, with the backward written out, as upstream's
    CUDA op does: autograd through the tap arithmetic recorded ~40 nodes per call and, handed a permuted output
    gradient, ran the largest product of the backward at half speed."""

    @staticmethod
    def forward(ctx, uv: Tensor, visible: Tensor, weights: Tensor, table: Tensor, sizes: tuple) -> Tensor:
        B, Q, G = weights.shape[0], weights.shape[1], weights.shape[-1]
        index, coefficient, axis_weight, axis_slope = bilinear_taps(uv, visible, sizes)
        weights = weights.permute(0, 5, 1, 3, 2, 4).unsqueeze(3).contiguous()  # [B, G, Q, 1, L, N, P]
        coefficient = coefficient.contiguous()  # [B, Q, 4, L, N, P]
        values = (weights * coefficient[:, None]).flatten(3)
        index = index.unsqueeze(1).expand(-1, G, -1, -1)
        matrix = values.new_zeros(B, G, Q, table.shape[2]).scatter_add_(3, index, values)
        ctx.save_for_backward(matrix, table, index, weights, coefficient, visible, *axis_weight, *axis_slope)
        device = table.device.type  # the backward's products run under the forward's autocast (trainer=gpu: bf16)
        ctx.autocast = device, torch.get_autocast_dtype(device), torch.is_autocast_enabled(device)
        return matrix @ table

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:
        matrix, table, index, weights, coefficient, visible, weight_x, weight_y, slope_x, slope_y = ctx.saved_tensors
        device, dtype, enabled = ctx.autocast
        grad = grad.contiguous()
        with torch.autocast(device, dtype=dtype, enabled=enabled):
            grad_table = matrix.transpose(2, 3) @ grad
            grad_values = (grad @ table.transpose(2, 3)).gather(3, index).unflatten(3, coefficient.shape[2:])
        grad_weights = (grad_values * coefficient[:, None]).sum(3).permute(0, 2, 4, 3, 5, 1)  # [B, Q, N, L, P, G]
        grad_coefficient = (grad_values * weights).sum(1).permute(2, 3, 0, 4, 1, 5)  # [4, L, B, N, Q, P]
        grad_coefficient = grad_coefficient.unflatten(0, (2, 2)) * visible  # (y, x) neighbour pairs
        grad_x = (grad_coefficient * weight_y[:, None] * slope_x[None]).sum(dim=(0, 1, 2))
        grad_y = (grad_coefficient * slope_y[:, None] * weight_x[None]).sum(dim=(0, 1, 2))
        grad_uv = torch.stack([grad_x, grad_y], dim=-1)
        return grad_uv, None, grad_weights, grad_table, None


def camera_parameters(projection_mat: Tensor, image_wh: Tensor) -> Tensor:
    """``[B, N, 12]``: the top three rows of each projection, pixel rows divided by the image size so the camera
    embedding sees resolution-independent values of order one."""
    scale = torch.cat([image_wh, torch.ones_like(image_wh[..., :1])], dim=-1).to(projection_mat)
    return (projection_mat[..., :3, :] / scale[..., None]).flatten(-2)


class DeformableAggregation(nn.Module):
    """Instance feature -> ``[aggregated image feature, instance feature]`` (upstream ``residual_mode="cat"``)."""

    def __init__(
        self,
        embed_dims: int,
        num_groups: int,
        num_levels: int,
        num_learnable_points: int,
        fixed_point_scale: float,
        attn_drop: float,
        method: str,
    ):
        super().__init__()
        self.num_groups, self.num_levels, self.attn_drop, self.method = num_groups, num_levels, attn_drop, method
        self.key_points = KeyPointsGenerator(embed_dims, num_learnable_points, fixed_point_scale)
        self.num_points = self.key_points.num_points
        # The camera embedding makes the weights depend on the camera, whatever the number of cameras.
        self.camera_encoder = nn.Sequential(*linear_relu_ln(embed_dims, 1, 2, 12))
        self.weights_fc = nn.Linear(embed_dims, num_groups * num_levels * self.num_points)
        self.output_proj = nn.Linear(embed_dims, embed_dims)
        nn.init.zeros_(self.weights_fc.weight)  # start from uniform weights, as upstream
        nn.init.zeros_(self.weights_fc.bias)
        nn.init.xavier_uniform_(self.output_proj.weight)
        nn.init.zeros_(self.output_proj.bias)

    def weights(self, feature: Tensor, projection_mat: Tensor, image_wh: Tensor) -> Tensor:
        """``[B, Q, N, L, P, G]``, a softmax over (N, L, P) per group; dropout of whole (camera, point) pairs."""
        B, Q = feature.shape[:2]
        N = projection_mat.shape[1]
        camera = self.camera_encoder(camera_parameters(projection_mat, image_wh))  # [B, N, D]
        # weights_fc(feature + camera), with the linear map applied to each term: Q + N rows instead of Q x N.
        logits = self.weights_fc(feature)[:, :, None] + F.linear(camera, self.weights_fc.weight)[:, None]
        weights = logits.reshape(B, Q, -1, self.num_groups).softmax(dim=-2)
        weights = weights.reshape(B, Q, N, self.num_levels, self.num_points, self.num_groups)
        if self.training and self.attn_drop > 0:
            keep = torch.rand(B, Q, N, 1, self.num_points, 1, device=weights.device) > self.attn_drop
            weights = weights * keep / (1 - self.attn_drop)
        return weights

    def forward(
        self,
        instance_feature: Tensor,
        anchor: Tensor,
        anchor_embed: Tensor,
        feature_maps: list[Tensor],
        projection_mat: Tensor,
        image_wh: Tensor,
    ) -> Tensor:
        key_points = self.key_points(anchor, instance_feature)
        weights = self.weights(instance_feature + anchor_embed, projection_mat, image_wh)
        features = deformable_aggregation(feature_maps, key_points, weights, projection_mat, image_wh, self.method)
        return torch.cat([self.output_proj(features), instance_feature], dim=-1)
