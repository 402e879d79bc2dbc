"""A small Vision Transformer for low-resolution images, whose embedding dimension is the load axis.

Built from PyTorch's stock pre-norm encoder layer so that nothing here is bespoke except the patch
embedding, the class token and the position embeddings. The zoo's grid goes down to dim 6, so the
head count must divide every dim in it (3 heads in the shipped specs).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from zoobench.data.catalog import DatasetInfo
from zoobench.errors import UsageError


class ViT(nn.Module):
    def __init__(self, image_shape: tuple[int, ...], num_classes: int, dim: int, depth: int, heads: int,
                 patch_size: int, mlp_ratio: float) -> None:
        super().__init__()
        channels, height, width = image_shape
        self.patch_embed = nn.Conv2d(channels, dim, kernel_size=patch_size, stride=patch_size)
        patches = (height // patch_size) * (width // patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, patches + 1, dim))
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        layer = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=int(dim * mlp_ratio), dropout=0.0,
                                           activation="gelu", batch_first=True, norm_first=True)
        # Nested tensors only pay off with padding masks, and PyTorch warns that pre-norm layers lack them.
        self.encoder = nn.TransformerEncoder(layer, depth, norm=nn.LayerNorm(dim), enable_nested_tensor=False)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(images).flatten(2).transpose(1, 2)  # (B, patches, dim)
        cls = self.cls_token.expand(x.shape[0], -1, -1)  # (B, 1, dim)
        x = torch.cat([cls, x], dim=1) + self.pos_embed  # (B, patches + 1, dim)
        x = self.encoder(x)  # (B, patches + 1, dim), final LayerNorm included
        return self.head(x[:, 0])  # (B, classes), read off the class token


def build(options: dict[str, Any], data: DatasetInfo, data_options: dict[str, Any]) -> nn.Module:
    """Fail with a spec-level message for shapes the attention or patching cannot take."""
    dim, heads, patch = options["dim"], options["heads"], options["patch_size"]
    if dim % heads:
        raise UsageError(f"vit: dim {dim} is not divisible by heads {heads}; pick a head count that divides "
                         f"every dim in the grid")
    if any(side % patch for side in data.input_shape[1:]):
        raise UsageError(f"vit: patch_size {patch} does not divide the {data.name} image size "
                         f"{data.input_shape[1:]}; pick a divisor")
    return ViT(data.input_shape, data.num_outputs, dim, options["depth"], heads, patch, options["mlp_ratio"])
