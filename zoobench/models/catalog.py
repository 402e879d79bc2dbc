"""The catalogue of architecture families zoobench can build: one frozen record each, importable without torch.

A record declares the family's options with their defaults (a spec's [model] table is checked
against them, and a grid axis such as ``model.width`` overrides one) and where the builder lives.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from zoobench.registry import Registry


@dataclass(frozen=True)
class ArchitectureInfo:
    name: str
    builder: str  # "module:function"; function(options, dataset_info, dataset_options) -> nn.Module
    options: dict[str, Any] = field(default_factory=dict)
    choices: dict[str, tuple] = field(default_factory=dict)


ARCHITECTURES: Registry[ArchitectureInfo] = Registry("architecture")
for _info in [
    ArchitectureInfo(
        "mlp", "zoobench.models.mlp:build",
        options={"width": 64, "depth": 2, "activation": "relu"},
        choices={"activation": ("relu", "tanh")},
    ),
    ArchitectureInfo(
        "resnet", "zoobench.models.resnet:build",
        options={"width": 64, "depth": 18}, choices={"depth": (18, 50)},
    ),
    ArchitectureInfo(
        "vit", "zoobench.models.vit:build",
        options={"dim": 192, "depth": 6, "heads": 3, "patch_size": 4, "mlp_ratio": 2.0},
    ),
    ArchitectureInfo(
        "gpt2", "zoobench.models.gpt2:build",
        options={"dim": 768, "layers": 12, "heads": 12, "dropout": 0.0},
    ),
]:
    ARCHITECTURES.add(_info.name, _info)
