"""``focal_onehot``: mmdet's sigmoid focal loss as upstream Sparse4D uses it, the fix of TAO's bug.

mmdet one-hot encodes over ``C + 1`` and drops the last column, so label ``C`` becomes an all-zero row: a negative
target on every class. Denoising negatives (label -1) get the same all-zero row, as mmdet's CUDA kernel gives them.
"""

from __future__ import annotations

from .base import register
from .focal import FocalScheme


@register("focal_onehot")
class FocalOneHot(FocalScheme):
    unmatched_gradient = "negative on every class: an all-zero one-hot row (also for denoising negatives)"
