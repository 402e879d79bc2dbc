"""The task-data protocol: what training, the loss-landscape metrics and methods ask of a dataset.

Every dataset zoobench loads (in-memory images, token blocks, a PDE's collocation points) implements
it, so a trainer, a Hessian or a method never needs to know which task it runs on. A batch is a
tuple whose first element is the model's input and whose last has one entry per example.

A dataset whose eval-mode `loss` is the mean of one loss per example (and nothing else that depends
on the batch) may say so with a class attribute ``examplewise_loss = True``: the Hessian then
concatenates its fixed batches into fewer, larger passes, which leaves such a loss's mean over the
batches unchanged and would change any other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterator, Protocol, runtime_checkable

if TYPE_CHECKING:
    import torch

Batch = tuple  # (inputs, ..., targets): what ``model(batch[0])`` and ``loss(model, batch)`` read


@runtime_checkable
class TaskData(Protocol):
    """A task's data on one device: shuffled training batches, fixed clean batches, loss and evaluation."""

    def to(self, device: Any) -> TaskData:
        """The same data on `device` (a torch device or its name)."""

    def steps_per_epoch(self, batch_size: int) -> int:
        """Batches in one pass over the training set."""

    def batches(self, batch_size: int, generator: torch.Generator,
                augment: Callable[[torch.Tensor], torch.Tensor] | None) -> Iterator[Batch]:
        """One shuffled epoch of training batches, in the order `generator` draws, augmented by `augment`."""

    def fixed_batches(self, split: str, count: int, size: int, seed: int = 0) -> list[Batch]:
        """Up to `count` clean batches of `size` examples of `split` ("train" or "test"), the same for
        every model and every call with the same `seed` (for Hessians, CKA, recalibration)."""

    def loss(self, model: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The mean training loss of a batch (differentiable, 0-d) and 0-d metrics such as {"acc": ...}."""

    def evaluate(self, model: torch.nn.Module, split: str = "test") -> dict[str, float]:
        """Clean (non-augmented) metrics of `model` on a whole split: "loss" and the task's own ("acc", ...)."""

    def chance(self, split: str = "test") -> float | None:
        """The "acc" that `evaluate` reports on `split` for the best constant prediction (the most frequent
        label's share of the examples it scores): what a model that learned nothing gets. At least
        1 / classes, more on an unbalanced split. None for tasks without accuracy."""
