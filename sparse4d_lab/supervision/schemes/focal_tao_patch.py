"""``focal_tao_patch``: the patch proposed in reply to the TAO bug report, the fix TAO users will actually apply.

It keeps ``target >= 0``: background rows (``C``) now get an all-zero one-hot row, but denoising negatives
(negative labels) are still dropped, so those queries never learn to reject a near-miss copy of an object.
"""

from __future__ import annotations

from torch import Tensor

from .base import register
from .focal import FocalScheme


@register("focal_tao_patch")
class FocalTaoPatch(FocalScheme):
    unmatched_gradient = "negative on every class for background rows; none for denoising negatives (dropped)"

    def kept_rows(self, labels: Tensor) -> Tensor:
        return labels >= 0
