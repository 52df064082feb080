"""``vfl``: RT-DETR's varifocal loss; the positive target is the IoU of the matched pair (detached).

Each class column is a binary task with target ``iou`` on the GT class of a positive and 0 elsewhere; negatives are
weighted ``alpha * p^gamma`` (RT-DETR: alpha 0.75, gamma 2), positives by their target. RT-DETR's matcher uses
the focal cost with alpha 0.25 (``cost_alpha``), so the varifocal arms are matched as the focal arms are.
Background and denoising negative rows are all-zero one-hot, so every class of an unmatched query is pushed down.
"""

from __future__ import annotations

from functools import partialmethod

import torch.nn.functional as F
from torch import Tensor

from .base import register
from .focal import FocalScheme


@register("vfl")
class VariFocal(FocalScheme):
    unmatched_gradient = "negative on every class, weighted alpha * p^gamma"
    needs_iou = True

    # RT-DETR's defaults: negatives weighted with alpha 0.75, matched with the focal cost's alpha 0.25.
    __init__ = partialmethod(FocalScheme.__init__, alpha=0.75, cost_alpha=0.25)

    def targets(self, labels: Tensor) -> Tensor:
        """Class rows used for the one-hot (overridden by the clamped variant)."""
        return labels

    def loss(self, logits: Tensor, labels: Tensor, avg_factor: float, iou: Tensor | None = None) -> Tensor:
        if iou is None:
            raise ValueError(f"{self.name} needs the IoU of every positive with its GT")
        one_hot = self.one_hot(self.targets(labels))
        target = one_hot * iou.detach().clamp(0, 1).unsqueeze(-1)
        weight = self.alpha * logits.sigmoid().detach().pow(self.gamma) * (1 - one_hot) + target
        loss = F.binary_cross_entropy_with_logits(logits, target, weight=weight, reduction="none")
        return self.loss_weight * loss.sum() / max(avg_factor, 1.0)
