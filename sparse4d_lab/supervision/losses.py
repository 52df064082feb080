"""Box and quality losses of Sparse4D v3 for positive queries, each a sum divided by an ``avg_factor`` that the
criterion chooses (the number of positives, of valid denoising queries, or of the rows themselves for a mean)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .. import geometry
from ..geometry import COS_YAW, SIN_YAW, X, Z

# Upstream Sparse4D v3 loss weights on the first 10 anchor dims (position, log size, sin/cos yaw, vx, vy).
LOSS_REG_WEIGHTS = (2.0, 2.0, 2.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0)
YAW = [SIN_YAW, COS_YAW]


def anchor_targets(pred_anchor: Tensor, gt_boxes: Tensor, labels: Tensor, allow_reverse: tuple[int, ...]) -> Tensor:
    """GT boxes as anchors ``[P, 11]``; for classes in ``allow_reverse`` (front and back look alike) the target yaw
    is flipped when the prediction points the other way, so a reversed heading is not penalised."""
    target = geometry.box_to_anchor(gt_boxes.to(pred_anchor))
    if allow_reverse:
        reverse = F.cosine_similarity(target[:, YAW], pred_anchor[:, YAW].detach(), dim=-1) < 0
        reverse &= torch.isin(labels, labels.new_tensor(allow_reverse))
        target[:, YAW] = torch.where(reverse.unsqueeze(-1), -target[:, YAW], target[:, YAW])
    return target


def box_loss(pred_anchor: Tensor, target: Tensor, avg_factor: float, weights=LOSS_REG_WEIGHTS) -> Tensor:
    """Weighted L1 on the first ``len(weights)`` anchor dims."""
    w = pred_anchor.new_tensor(weights)
    dims = len(weights)
    return ((pred_anchor[:, :dims] - target[:, :dims]).abs() * w).sum() / max(avg_factor, 1.0)


def centerness_loss(
    logit: Tensor, pred_anchor: Tensor, target: Tensor, avg_factor: float, detach_target: bool = False
) -> Tensor:
    """BCE against ``exp(-|centre error|)``: the score learns how far off the box centre is. The goal depends on
    the predicted centre; TAO and upstream leave it attached, so this loss also pulls centres towards the GT
    (harder where the centerness logit is high)."""
    error = pred_anchor[:, X : Z + 1] - target[:, X : Z + 1]
    goal = torch.exp(-(error.detach() if detach_target else error).norm(dim=-1))
    return F.binary_cross_entropy_with_logits(logit, goal, reduction="sum") / max(avg_factor, 1.0)


def yawness_loss(logit: Tensor, pred_anchor: Tensor, target: Tensor, avg_factor: float) -> Tensor:
    """Gaussian focal loss (as upstream) against "the heading points the right way" (cosine > 0)."""
    goal = (F.cosine_similarity(pred_anchor[:, YAW].detach(), target[:, YAW], dim=-1) > 0).float()
    p = logit.sigmoid().clamp(1e-6, 1 - 1e-6)
    pos = -p.log() * (1 - p).pow(2) * goal
    neg = -(1 - p).log() * p.pow(2) * (1 - goal).pow(4)
    return (pos + neg).sum() / max(avg_factor, 1.0)
