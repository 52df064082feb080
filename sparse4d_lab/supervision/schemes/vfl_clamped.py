"""``vfl_clamped``: an RT-DETR port's "fix" for one-hot's out-of-range background index: background labels
are clamped to ``C - 1`` before the one-hot.

An unmatched query then carries a one-hot on the last class with target ``iou = 0``: its weight there is
``alpha * p^gamma * (1 - 1) + 0 = 0``. The last class silently loses all negative supervision.
"""

from __future__ import annotations

from torch import Tensor

from .base import register
from .vfl import VariFocal


@register("vfl_clamped")
class VariFocalClamped(VariFocal):
    unmatched_gradient = "negative on every class but the last, which gets exactly zero"

    def targets(self, labels: Tensor) -> Tensor:
        return labels.clamp(max=self.num_classes - 1)
