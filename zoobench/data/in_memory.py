"""Classification data held in memory as uint8 image tensors, batched by index slicing.

Small and CIFAR-sized datasets fit in memory (and later on the GPU) whole: slicing a shuffled index
is far cheaper than a DataLoader for the tiny models of a zoo, and a per-model generator fixes the
data order. Augmentation runs on the uint8 images, normalisation after it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ClassVar, Iterator

import torch
import torch.nn.functional as F


@dataclass
class InMemoryClassification:
    examplewise_loss: ClassVar[bool] = True  # the mean cross-entropy of its examples (see the protocol)
    x_train: torch.Tensor  # (N, C, H, W) uint8
    y_train: torch.Tensor  # (N,) int64
    x_test: torch.Tensor
    y_test: torch.Tensor
    mean: torch.Tensor  # (C,) per-channel mean of x_train / 255
    std: torch.Tensor

    def to(self, device: torch.device | str) -> InMemoryClassification:
        return InMemoryClassification(*(t.to(device) for t in (self.x_train, self.y_train, self.x_test,
                                                                 self.y_test, self.mean, self.std)))

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        return (images.float() / 255 - self.mean[:, None, None]) / self.std[:, None, None]

    def steps_per_epoch(self, batch_size: int) -> int:
        return -(-len(self.y_train) // batch_size)

    def batches(
        self, batch_size: int, generator: torch.Generator, augment: Callable[[torch.Tensor], torch.Tensor] | None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One shuffled epoch; the last batch may be smaller (as with a DataLoader's defaults)."""
        order = torch.randperm(len(self.y_train), generator=generator).to(self.y_train.device)
        normalized = None if augment else self.normalize(self.x_train)  # once per epoch, not per batch
        for start in range(0, len(order), batch_size):
            index = order[start:start + batch_size]
            images = normalized[index] if normalized is not None else self.normalize(augment(self.x_train[index]))
            yield images, self.y_train[index]

    def fixed_batches(self, split: str, count: int, size: int, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Up to `count` clean batches of `size` examples, the same for every model (for the Hessian, CKA, ...)."""
        x, y = (self.x_test, self.y_test) if split == "test" else (self.x_train, self.y_train)
        order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed)).to(y.device)
        chosen = order[:count * size]
        return [(self.normalize(x[index]), y[index]) for index in chosen.split(size)]

    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module, split: str = "test", batch_size: int = 1024) -> dict[str, float]:
        """Clean (non-augmented) mean loss and accuracy on a split."""
        x, y = (self.x_test, self.y_test) if split == "test" else (self.x_train, self.y_train)
        loss = torch.zeros((), device=y.device)
        correct = torch.zeros((), device=y.device)
        for start in range(0, len(y), batch_size):
            logits = model(self.normalize(x[start:start + batch_size]))
            target = y[start:start + batch_size]
            loss += F.cross_entropy(logits.float(), target, reduction="sum")
            correct += (logits.argmax(1) == target).sum()
        return {"loss": loss.item() / len(y), "acc": correct.item() / len(y)}

    def chance(self, split: str = "test") -> float:
        """The most frequent class's share of the split: the accuracy of always predicting it."""
        labels = self.y_test if split == "test" else self.y_train
        return torch.bincount(labels).max().item() / len(labels)

    def loss(self, model: torch.nn.Module, batch: tuple[torch.Tensor, torch.Tensor]
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Mean cross-entropy of a training batch, and its accuracy."""
        images, labels = batch
        logits = model(images)
        return F.cross_entropy(logits.float(), labels), {"acc": (logits.argmax(1) == labels).float().mean()}
