"""A fully connected network whose hidden width is the zoo's load axis."""

from __future__ import annotations

import math
from typing import Any

from torch import nn

from zoobench.data.catalog import DatasetInfo


def build(options: dict[str, Any], data: DatasetInfo, data_options: dict[str, Any]) -> nn.Module:
    """``depth`` hidden layers of ``width`` units; inputs are flattened, so images work as they are."""
    activation = {"relu": nn.ReLU, "tanh": nn.Tanh}[options["activation"]]
    width = options["width"]
    layers: list[nn.Module] = [nn.Flatten()]
    fan_in = math.prod(data.input_shape)
    for _ in range(options["depth"]):
        layers += [nn.Linear(fan_in, width), activation()]
        fan_in = width
    layers.append(nn.Linear(fan_in, data.num_outputs))
    return nn.Sequential(*layers)
