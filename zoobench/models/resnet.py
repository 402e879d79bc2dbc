"""Width-scaled ResNet-18/50 with the CIFAR stem of the Phase Transition Model Zoo.

The residual blocks are torchvision's own, and module names follow torchvision's ResNet, so a
checkpoint's keys read like any torchvision ResNet's. Only the stem differs (3x3 stride-1 conv, no
max-pool: 32x32 images are too small to downsample 4x before the first stage) and the stage widths
are [w, 2w, 4w, 8w] instead of the fixed [64, 128, 256, 512], because width is the zoo's load axis.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck, conv1x1

from zoobench.data.catalog import DatasetInfo

_LAYOUTS: dict[int, tuple[type[BasicBlock] | type[Bottleneck], list[int]]] = {
    18: (BasicBlock, [2, 2, 2, 2]),
    50: (Bottleneck, [3, 4, 6, 3]),
}


class CifarResNet(nn.Module):
    def __init__(self, block: type[BasicBlock] | type[Bottleneck], blocks: list[int], width: int,
                 in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        channels = width
        for index, (count, stride) in enumerate(zip(blocks, [1, 2, 2, 2])):
            planes = width * 2**index
            stage = _stage(block, channels, planes, count, stride)
            setattr(self, f"layer{index + 1}", stage)
            channels = planes * block.expansion
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(channels, num_classes)
        # torchvision's ResNet init, so that the "default" init scheme means the same as there.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))  # (B, w, H, W)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))  # (B, 8w * expansion, H/8, W/8)
        return self.fc(torch.flatten(self.avgpool(x), 1))


def _stage(block: type[BasicBlock] | type[Bottleneck], channels: int, planes: int, count: int,
           stride: int) -> nn.Sequential:
    """torchvision's ``ResNet._make_layer`` without its hidden state: a projection shortcut only
    where the first block changes resolution or channel count."""
    out = planes * block.expansion
    downsample = None
    if stride != 1 or channels != out:
        downsample = nn.Sequential(conv1x1(channels, out, stride), nn.BatchNorm2d(out))
    layers = [block(channels, planes, stride, downsample)]
    layers += [block(out, planes) for _ in range(count - 1)]
    return nn.Sequential(*layers)


def build(options: dict[str, Any], data: DatasetInfo, data_options: dict[str, Any]) -> nn.Module:
    """ResNet-``depth`` whose first stage has ``width`` channels (64 gives the standard widths)."""
    block, blocks = _LAYOUTS[options["depth"]]
    return CifarResNet(block, blocks, options["width"], data.input_shape[0], data.num_outputs)
