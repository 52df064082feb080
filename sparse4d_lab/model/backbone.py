"""ResNet image backbone (He et al. 2016), written here so nothing is downloaded.

Module names follow torchvision's layout, so a local torchvision-style checkpoint loads as is (``fc`` is dropped).
``base_channels`` scales every stage: 64 is the standard network, 16 the quarter-width CPU default.
``freeze_norm`` holds every batch norm at its loaded statistics and affine weights, as TAO's Sparse4D does with its
pretrained backbone: a fine-tune's few images per batch would otherwise re-estimate them noisily.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn


class BasicBlock(nn.Module):
    """Two 3x3 convolutions and a shortcut (ResNet-18/34)."""

    expansion = 1

    def __init__(self, in_channels: int, channels: int, stride: int = 1):
        super().__init__()
        out = channels * self.expansion
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(in_channels, out, stride)

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(y)) + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (carrying the stride, "pytorch" style), 1x1 expand, and a shortcut (ResNet-50/101)."""

    expansion = 4

    def __init__(self, in_channels: int, channels: int, stride: int = 1):
        super().__init__()
        out = channels * self.expansion
        self.conv1 = nn.Conv2d(in_channels, channels, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.conv3 = nn.Conv2d(channels, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(in_channels, out, stride)

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        return self.relu(self.bn3(self.conv3(y)) + identity)


def _shortcut(in_channels: int, out_channels: int, stride: int) -> nn.Module | None:
    if stride == 1 and in_channels == out_channels:
        return None
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels))


ARCHS: dict[int, tuple[type[BasicBlock] | type[Bottleneck], tuple[int, int, int, int]]] = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
}


class ResNet(nn.Module):
    """Returns the four stage outputs (strides 4, 8, 16, 32) for the FPN."""

    def __init__(
        self, depth: int = 18, base_channels: int = 64, checkpoint: str | None = None, freeze_norm: bool = False
    ):
        super().__init__()
        self.freeze_norm = freeze_norm
        block, counts = ARCHS[depth]
        self.conv1 = nn.Conv2d(3, base_channels, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(base_channels)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        in_channels = base_channels
        self.out_channels: list[int] = []
        for index, count in enumerate(counts):
            channels = base_channels * 2**index
            stride = 1 if index == 0 else 2
            blocks = []
            for b in range(count):
                blocks.append(block(in_channels, channels, stride if b == 0 else 1))
                in_channels = channels * block.expansion
            self.add_module(f"layer{index + 1}", nn.Sequential(*blocks))
            self.out_channels.append(in_channels)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        if checkpoint is not None:
            self.load_checkpoint(checkpoint)
        for norm in self.norms():
            norm.requires_grad_(not freeze_norm)

    def norms(self) -> list[nn.BatchNorm2d]:
        return [m for m in self.modules() if isinstance(m, nn.BatchNorm2d)]

    def train(self, mode: bool = True) -> ResNet:
        """Frozen norms stay in evaluation mode (running statistics, no update) while the rest trains."""
        super().train(mode)
        if self.freeze_norm:
            for norm in self.norms():
                norm.eval()
        return self

    def load_checkpoint(self, path: str) -> None:
        """Load a local torchvision-layout state dict (optionally nested under ``state_dict``); the classifier is
        ignored, everything else must match exactly."""
        if not Path(path).is_file():
            raise FileNotFoundError(f"model.backbone_checkpoint: no file at {path}; fix the path or set it to null")
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state)
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        try:
            self.load_state_dict(state, strict=True)
        except RuntimeError as err:
            raise ValueError(
                f"model.backbone_checkpoint: {path} does not fit this ResNet (depth/base_channels): {err}"
            ) from err

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        outputs = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            outputs.append(x)
        return outputs
