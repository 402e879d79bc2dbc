"""Building a recipe's model: the architecture family's builder, then the recipe's initialisation."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from zoobench.data.catalog import DATASETS
from zoobench.models.catalog import ARCHITECTURES
from zoobench.registry import load_target

if TYPE_CHECKING:
    from torch import nn


def build_model(recipe: dict[str, Any]) -> nn.Module:
    """The untrained model of a recipe (``ZooSpec.recipe()`` or a stored params.json's "recipe")."""
    info = ARCHITECTURES.get(recipe["model"]["architecture"])
    builder = load_target(info.builder, f"architecture '{info.name}'")
    data = recipe["data"]
    return builder(recipe["model"]["options"], DATASETS.get(data["dataset"]), data["options"])


def check_builder(architecture: str) -> None:
    """Fail with a one-line error when an architecture's builder cannot be imported."""
    load_target(ARCHITECTURES.get(architecture).builder, f"architecture '{architecture}'")


def initialize(model: nn.Module, scheme: str) -> None:
    """Re-initialise conv and linear layers; "kaiming_*" follows the paper's code (biases 0.01)."""
    if scheme == "default":
        return
    from torch import nn

    init = {"kaiming_uniform": nn.init.kaiming_uniform_, "kaiming_normal": nn.init.kaiming_normal_}[scheme]
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d)):
            init(module.weight, nonlinearity="relu")
            if module.bias is not None:
                nn.init.constant_(module.bias, 0.01)
