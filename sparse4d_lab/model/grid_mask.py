"""GridMask (Chen et al. 2020) as upstream applies it inside the model during training: with probability ``prob``
one random grid removes square cells from every image of the batch, keeping stripes of width ``ratio`` x period
(upstream's mode 1, no rotation), so the decoder learns from partly occluded objects.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def _stripes(length: int, period: int, width: int, start: int, device: torch.device) -> Tensor:
    """Upstream's stripes along one axis of a canvas 1.5x the image, centre-cropped to ``length``."""
    canvas = int(1.5 * length)
    offset = torch.arange(canvas, device=device) - start
    stripe = (offset >= 0) & (offset % period < width) & (offset // period < canvas // period)
    crop = (canvas - length) // 2
    return stripe[crop : crop + length]


class GridMask(nn.Module):
    def __init__(self, prob: float, ratio: float = 0.5):
        super().__init__()
        self.prob, self.ratio = prob, ratio

    def forward(self, images: Tensor) -> Tensor:
        """``images [M, 3, H, W]`` (normalised), returned with the removed cells set to 0."""
        if not self.training or self.prob == 0 or float(torch.rand(())) >= self.prob:
            return images
        H, W = images.shape[-2:]
        period = int(torch.randint(2, max(H, 3), ()))
        width = min(max(int(period * self.ratio + 0.5), 1), period - 1)
        start_h, start_w = (int(s) for s in torch.randint(period, (2,)))
        keep = _stripes(H, period, width, start_h, images.device)[:, None]
        keep = keep | _stripes(W, period, width, start_w, images.device)[None, :]
        return images * keep.to(images)
