"""Feature pyramid network (Lin et al. 2017) as upstream configures it: no norm layers, nearest-neighbour top-down
path, and extra stride-2 levels computed from the last output with a ReLU before (``add_extra_convs="on_output"``).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class FPN(nn.Module):
    def __init__(self, in_channels: list[int], out_channels: int, num_outs: int, start_level: int = 0):
        super().__init__()
        self.start_level = start_level
        used = in_channels[start_level:]
        self.lateral = nn.ModuleList(nn.Conv2d(c, out_channels, 1) for c in used)
        # Only the levels that are returned get an output conv; levels past the backbone come from extra convs.
        self.output = nn.ModuleList(
            nn.Conv2d(out_channels, out_channels, 3, padding=1) for _ in range(min(num_outs, len(used)))
        )
        self.extra = nn.ModuleList(
            nn.Conv2d(out_channels, out_channels, 3, stride=2, padding=1) for _ in range(num_outs - len(used))
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, features: list[Tensor]) -> list[Tensor]:
        laterals = [conv(x) for conv, x in zip(self.lateral, features[self.start_level :], strict=True)]
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + F.interpolate(laterals[i], size=laterals[i - 1].shape[-2:])
        outputs = [conv(x) for conv, x in zip(self.output, laterals, strict=False)]
        for conv in self.extra:
            outputs.append(conv(F.relu(outputs[-1])))
        return outputs
