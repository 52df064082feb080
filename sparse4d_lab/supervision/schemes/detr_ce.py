"""``detr_ce``: DETR's softmax cross-entropy over ``C + 1`` logits with a down-weighted no-object class.

Unmatched queries and denoising negatives are supervised as "no object" (weight ``eos_coef``, DETR's 0.1); the loss is
DETR's weighted mean over queries. Matching cost is ``-p(class)``; inference scores are the class probabilities.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import ClassificationScheme, register


@register("detr_ce")
class DetrCrossEntropy(ClassificationScheme):
    unmatched_gradient = "towards no-object: every class logit pushed down, the no-object logit up (weight eos_coef)"

    def __init__(self, num_classes: int, loss_weight: float = 2.0, eos_coef: float = 0.1):
        super().__init__(num_classes, loss_weight)
        self.eos_coef = eos_coef

    @property
    def num_logits(self) -> int:
        return self.num_classes + 1

    def match_cost(self, logits: Tensor, gt_labels: Tensor) -> Tensor:
        return -logits.softmax(-1)[:, gt_labels]

    def loss(self, logits: Tensor, labels: Tensor, avg_factor: float, iou: Tensor | None = None) -> Tensor:
        target = torch.where(self.foreground(labels), labels, torch.full_like(labels, self.num_classes))
        weight = logits.new_ones(self.num_logits)
        weight[-1] = self.eos_coef
        if len(labels) == 0:
            return logits.sum() * 0.0
        return self.loss_weight * F.cross_entropy(logits, target, weight=weight)

    def scores(self, logits: Tensor) -> Tensor:
        return logits.softmax(-1)[..., : self.num_classes]
