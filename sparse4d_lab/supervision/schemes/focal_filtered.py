"""``focal_filtered``: TAO Toolkit 6.25.11's custom focal loss, the bug under test, reproduced exactly.

TAO keeps rows with ``0 <= target < num_classes`` and drops the rest, so background rows (label ``C``) and
denoising negatives vanish from the loss: nothing ever tells an unmatched query that it is not an object.
"""

from __future__ import annotations

from torch import Tensor

from .base import register
from .focal import FocalScheme


@register("focal_filtered")
class FocalFiltered(FocalScheme):
    unmatched_gradient = "none: background and denoising-negative rows are dropped from the loss (zero gradient)"

    def kept_rows(self, labels: Tensor) -> Tensor:
        return self.foreground(labels)
