"""Denoising queries (Sparse4D v2/v3, after DN-DETR/DINO): noisy copies of the ground truth that the decoder must
pull back onto their box (positives) or reject (negatives), trained beside the normal queries.

Each group holds, per GT, one copy with small noise (uniform in +-scale per anchor dimension) and one with large
noise (magnitude between 1 and 2 scales, random sign). As upstream, a Hungarian match of all copies of a group to
the GT (weighted L1 in anchor space) decides which copies are positives: normally the small-noise ones, unless noise
moved a copy closer to another GT. The attention mask keeps the normal queries from seeing any copy and keeps the
groups apart.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from .. import geometry


@dataclass
class DenoisingQueries:
    """``[B, Q_dn, ...]``; groups are contiguous, each laid out as [small-noise copies, large-noise copies]."""

    anchor: Tensor  # [B, Q_dn, 11]
    gt_index: Tensor  # [B, Q_dn] long: the GT a positive must learn / a negative was copied from; -1 for padding
    positive: Tensor  # [B, Q_dn] bool
    valid: Tensor  # [B, Q_dn] bool: a copy of a real GT (not padding)
    group: Tensor  # [B, Q_dn] long


def make_denoising_queries(
    gt_boxes: list[Tensor],
    num_groups: int,
    max_gt: int,
    noise_scale: tuple[float, ...],
    cost_weights: tuple[float, ...],
) -> DenoisingQueries | None:
    """Noisy copies of the first ``max_gt`` GT boxes ``[M, 10]`` of every slot; None if no slot has GT."""
    counts = [min(len(b), max_gt) for b in gt_boxes]
    M = max(counts, default=0)
    if num_groups == 0 or M == 0:
        return None
    B, G = len(gt_boxes), num_groups
    device = gt_boxes[0].device
    target = torch.zeros(B, M, geometry.ANCHOR_DIM, device=device)
    for b, n in enumerate(counts):
        target[b, :n] = geometry.box_to_anchor(gt_boxes[b].reshape(-1, geometry.BOX_DIM)[:n].float())
    scale = torch.tensor(noise_scale, device=device)
    base = target[:, None].expand(B, G, M, -1)
    positive_noise = (torch.rand_like(base) * 2 - 1) * scale
    sign = torch.where(torch.rand_like(base) > 0.5, 1.0, -1.0)
    negative_noise = (torch.rand_like(base) + 1) * sign * scale
    anchor = torch.cat([base + positive_noise, base + negative_noise], dim=2)  # [B, G, 2M, 11]

    source = torch.arange(M, device=device).repeat(2)
    gt_index = source.expand(B, G, 2 * M).clone()
    positive = torch.zeros(B, G, 2 * M, dtype=torch.bool, device=device)
    weights = torch.tensor(cost_weights, device=device)
    for b, n in enumerate(counts):
        if n == 0:
            continue
        copies = torch.cat([torch.arange(n, device=device), M + torch.arange(n, device=device)])
        cost = ((anchor[b][:, copies, None] - target[b, None, None, :n]).abs() * weights).sum(-1)  # [G, 2n, n]
        for g, matrix in enumerate(cost.cpu().numpy()):
            rows, cols = linear_sum_assignment(matrix)
            chosen = copies[torch.as_tensor(rows, device=device)]
            positive[b, g, chosen] = True
            gt_index[b, g, chosen] = torch.as_tensor(cols, device=device)
    valid = (source < torch.tensor(counts, device=device)[:, None]).unsqueeze(1).expand(B, G, 2 * M)
    group = torch.arange(G, device=device)[None, :, None].expand(B, G, 2 * M)
    return DenoisingQueries(
        anchor=anchor.flatten(1, 2),
        gt_index=torch.where(valid, gt_index, -1).flatten(1, 2),
        positive=(positive & valid).flatten(1, 2),
        valid=valid.flatten(1, 2),
        group=group.flatten(1, 2),
    )


def attention_mask(num_queries: int, dn: DenoisingQueries, num_heads: int) -> Tensor:
    """``[B * heads, Q + Q_dn, Q + Q_dn]`` bool, True = may not attend. Normal queries see only normal queries;
    a copy sees the real copies of its own group (and itself, so no row is empty)."""
    B, Q_dn = dn.group.shape
    total = num_queries + Q_dn
    mask = torch.ones(B, total, total, dtype=torch.bool, device=dn.group.device)
    mask[:, :num_queries, :num_queries] = False
    visible = (dn.group[:, :, None] == dn.group[:, None, :]) & dn.valid[:, None, :]
    visible = visible | torch.eye(Q_dn, dtype=torch.bool, device=visible.device)
    mask[:, num_queries:, num_queries:] = ~visible
    return mask.repeat_interleave(num_heads, dim=0)
