"""Train-time augmentation from a spec, with torchvision's v2 transforms applied per image.

torchvision draws one set of random parameters per call, so each image of a batch is transformed on
its own (a batch-level call would crop every image identically). Randomness comes from torch's
global generator, which the trainer seeds per model.
"""

from __future__ import annotations

from typing import Callable

import torch

from zoobench.spec import AugmentationSpec


def build(spec: AugmentationSpec, image_size: tuple[int, int]) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """A function from a uint8 batch (B, C, H, W) to an augmented one, or None when nothing is enabled."""
    if not spec.enabled:
        return None
    from torchvision.transforms import v2

    steps: list = []
    if spec.crop_padding:
        steps.append(v2.RandomCrop(image_size, padding=spec.crop_padding))
    if spec.hflip:
        steps.append(v2.RandomHorizontalFlip())
    if spec.rotation_degrees:
        steps.append(v2.RandomRotation(spec.rotation_degrees))
    if spec.color_jitter:
        strength = spec.color_jitter
        steps.append(v2.ColorJitter(brightness=strength, contrast=strength, saturation=strength))
    if spec.randaugment:
        steps.append(v2.RandAugment())
    if spec.random_erasing:
        steps.append(v2.RandomErasing(p=spec.random_erasing))
    transform = v2.Compose(steps)
    return lambda batch: torch.stack([transform(image) for image in batch])
