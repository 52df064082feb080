"""Sigmoid focal loss (Lin et al.), written once and shared by the focal arms, which differ only in their targets."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import ClassificationScheme


def sigmoid_focal(logits: Tensor, target: Tensor, alpha: float, gamma: float) -> Tensor:
    """Element-wise focal loss ``[N, C]`` for float targets in [0, 1] (mmdet's ``py_sigmoid_focal_loss``)."""
    p = logits.sigmoid()
    pt = (1 - p) * target + p * (1 - target)
    weight = (alpha * target + (1 - alpha) * (1 - target)) * pt.pow(gamma)
    return F.binary_cross_entropy_with_logits(logits, target, reduction="none") * weight


class FocalScheme(ClassificationScheme):
    """C sigmoid logits, focal matching cost, sigmoid scores; subclasses choose which rows count and their targets.
    ``cost_alpha`` weighs the matching cost (default: the loss's ``alpha``, as Sparse4D)."""

    def __init__(
        self,
        num_classes: int,
        loss_weight: float = 2.0,
        alpha: float = 0.25,
        gamma: float = 2.0,
        cost_alpha: float | None = None,
    ):
        super().__init__(num_classes, loss_weight)
        self.alpha, self.gamma = alpha, gamma
        self.cost_alpha = alpha if cost_alpha is None else cost_alpha

    def match_cost(self, logits: Tensor, gt_labels: Tensor) -> Tensor:
        # Sparse4D / Deformable-DETR focal cost: positive cost minus negative cost of the GT's class.
        p = logits.sigmoid()[:, gt_labels]
        eps = 1e-8
        neg = -(1 - p + eps).log() * (1 - self.cost_alpha) * p.pow(self.gamma)
        pos = -(p + eps).log() * self.cost_alpha * (1 - p).pow(self.gamma)
        return pos - neg

    def scores(self, logits: Tensor) -> Tensor:
        return logits.sigmoid()

    def kept_rows(self, labels: Tensor) -> Tensor:
        """Rows that enter the loss."""
        return torch.ones_like(labels, dtype=torch.bool)

    def loss(self, logits: Tensor, labels: Tensor, avg_factor: float, iou: Tensor | None = None) -> Tensor:
        keep = self.kept_rows(labels)
        # Multiplying dropped rows by zero (rather than indexing them away) keeps the graph connected, so a batch
        # where every row is dropped still back-propagates a zero loss; values and gradients are the same.
        per_row = sigmoid_focal(logits, self.one_hot(labels), self.alpha, self.gamma).sum(-1)
        return self.loss_weight * (per_row * keep).sum() / max(avg_factor, 1.0)
