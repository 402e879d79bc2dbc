"""Train-time augmentation from a spec: every image of a batch gets its own random parameters.

torchvision's v2 transforms draw one set of parameters per call, so a batch-level call would crop
every image identically, and calling them image by image costs ~180 us per CIFAR image on a CPU
core (a quarter of a small ResNet's fused step) and thousands of tiny kernel launches per batch on
a GPU. The geometric transforms of the zoos' recipes (padded random crop, horizontal flip, rotation)
therefore run batched: parameters for the whole batch in three draws, then one gather, one select
and one ``grid_sample``, with the same semantics as torchvision's functional ops (zero fill, nearest
interpolation; tested image by image against them). The photometric ones (colour jitter,
RandAugment, random erasing) still run per image through torchvision. Randomness comes from torch's
global generator, which the trainer seeds per model.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

from zoobench.spec import AugmentationSpec

Augment = Callable[[torch.Tensor], torch.Tensor]


def build(spec: AugmentationSpec, image_size: tuple[int, int]) -> Augment | None:
    """A function from a uint8 batch (B, C, H, W) to an augmented one, or None when nothing is enabled."""
    if not spec.enabled:
        return None
    steps: list[Augment] = []
    if spec.crop_padding:
        steps.append(lambda batch: random_crop(batch, spec.crop_padding))
    if spec.hflip:
        steps.append(random_hflip)
    if spec.rotation_degrees:
        steps.append(lambda batch: random_rotation(batch, spec.rotation_degrees))
    photometric = _per_image(spec)
    if photometric is not None:
        steps.append(photometric)

    def augment(batch: torch.Tensor) -> torch.Tensor:
        for step in steps:
            batch = step(batch)
        return batch

    return augment


def random_crop(batch: torch.Tensor, padding: int) -> torch.Tensor:
    """Each image zero-padded by `padding` on every side, then cropped back to its size at a random offset."""
    size, _, height, width = batch.shape
    tops, lefts = torch.randint(0, 2 * padding + 1, (2, size))
    return crop(F.pad(batch, (padding,) * 4), tops.to(batch.device), lefts.to(batch.device), height, width)


def crop(batch: torch.Tensor, tops: torch.Tensor, lefts: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Image i's window of `height` x `width` pixels starting at row ``tops[i]``, column ``lefts[i]``."""
    device = batch.device
    rows = tops[:, None] + torch.arange(height, device=device)  # (B, H)
    cols = lefts[:, None] + torch.arange(width, device=device)  # (B, W)
    index = torch.arange(len(batch), device=device)[:, None, None, None]
    channel = torch.arange(batch.shape[1], device=device)[None, :, None, None]
    return batch[index, channel, rows[:, None, :, None], cols[:, None, None, :]]


def random_hflip(batch: torch.Tensor) -> torch.Tensor:
    """Each image mirrored left-right with probability 1/2."""
    flip = (torch.rand(len(batch)) < 0.5).to(batch.device)
    return torch.where(flip[:, None, None, None], batch.flip(-1), batch)


def random_rotation(batch: torch.Tensor, degrees: float) -> torch.Tensor:
    """Each image rotated by its own angle, uniform in [-degrees, degrees]."""
    return rotate(batch, torch.empty(len(batch)).uniform_(-degrees, degrees))


def rotate(batch: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Image i rotated counter-clockwise by ``angles[i]`` degrees about its centre, as torchvision's
    ``rotate`` does it: same size, nearest pixel, zeros where the rotated image does not reach."""
    _, _, height, width = batch.shape
    radians = angles.double() * math.pi / 180
    cos, sin = radians.cos(), radians.sin()
    # Output pixel offsets from the centre map to input offsets by the inverse rotation; affine_grid
    # works in coordinates normalised per axis, hence the aspect-ratio factors.
    theta = torch.stack([torch.stack([cos, -sin * height / width, torch.zeros_like(cos)], 1),
                         torch.stack([sin * width / height, cos, torch.zeros_like(cos)], 1)], 1)
    grid = F.affine_grid(theta.float().to(batch.device), list(batch.shape), align_corners=False)
    rotated = F.grid_sample(batch.float(), grid, mode="nearest", padding_mode="zeros", align_corners=False)
    return rotated.round().to(batch.dtype)


def _per_image(spec: AugmentationSpec) -> Augment | None:
    """torchvision's photometric transforms, called image by image (they draw per call)."""
    from torchvision.transforms import v2

    steps: list = []
    if spec.color_jitter:
        strength = spec.color_jitter
        steps.append(v2.ColorJitter(brightness=strength, contrast=strength, saturation=strength))
    if spec.randaugment:
        steps.append(v2.RandAugment())
    if spec.random_erasing:
        steps.append(v2.RandomErasing(p=spec.random_erasing))
    if not steps:
        return None
    transform = v2.Compose(steps)
    return lambda batch: torch.stack([transform(image) for image in batch])
