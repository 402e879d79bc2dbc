"""Hessian-vector products of a training loss: the operator `zoobench.landscape.hessian` estimates from.

The loss is the mean over fixed batches of each batch's mean loss; the Hessian is taken with
respect to the parameters that require grad, flattened in ``named_parameters()`` order. A (dim, k)
block of vectors is applied in passes of up to ``BLOCK`` vectors (as curvlinops does with ``vmap``).
With ``concatenate`` (for a loss that is a mean of per-example losses; eval mode keeps the examples
apart), batches of one shape are joined into larger ones within a quarter of ``PASS_BYTES``: the
mean over the batches is unchanged, and fewer, larger passes cost less (a digits ResNet-18 on the
CPU: 1.7-2.7x less per product, 10 batches of 64 as one of 640).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from zoobench.landscape.weightspace import LossFn, LossModule

MODES = ("forward_over_reverse", "reverse_over_reverse")
# Vectors per pass of an HVP, at most (one (k, ...) batch through every layer): on the digits MLP (2-core
# CPU) 1.3-1.5 ms per product in passes of 16-99 vectors against 5.7 ms one at a time; convolutions on
# the CPU lose (ResNet-18 width 8: 2.3-2.6x slower per product in passes of 32), so they get one.
BLOCK = 32
# Memory a pass may add: each vector adds about one batch's activations (ResNet-18: 0.8x its layers'
# output bytes, on top of 2.6x for the gradient graph), so wide models get fewer vectors per pass.
# A concatenated batch may have a quarter of that in activations (the gradient graph and the pass's
# vectors take the rest): a ResNet-18 of width 64 on 64 CIFAR images already has about 0.3 GB, so large
# models keep their batches as they are.
PASS_BYTES = 2 * 2**30


class HVP:
    """``v -> H v`` for the mean loss over fixed batches, one (concatenated) batch in memory at a time, a
    (dim, k) block in passes of at most ``block`` vectors.

    Use :func:`make_hvp` to build one. ``calls`` counts the products done: one per vector, so a
    (dim, k) block adds k.
    """

    def __init__(self, model: nn.Module, loss_fn: LossFn, batches: Sequence[Any], mode: str,
                 block: int | None = None, concatenate: bool = False) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown HVP mode {mode!r}; expected one of {MODES}")
        if model.training:
            # Train mode would make the Hessian that of a different function on every product:
            # BatchNorm would normalize with batch statistics (and update its running stats), dropout
            # would draw new masks.
            raise ValueError("the model must be in eval mode (call model.eval()) for Hessian metrics")
        if not batches:
            raise ValueError("at least one batch is needed")
        if block is not None and block < 1:
            raise ValueError(f"block must be at least 1, got {block}")
        named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
        if not named:
            raise ValueError("the model has no parameters that require grad")
        self.model, self.loss_fn, self.mode, self._count = model, loss_fn, mode, len(batches)
        self.names = [name for name, _ in named]
        self.params = [p for _, p in named]
        self._sizes = [p.numel() for p in self.params]
        self.dim = sum(self._sizes)
        self.dtype, self.device = self.params[0].dtype, self.params[0].device
        self.calls = 0
        # functional_call substitutes the parameters for the whole call, so every use of the model
        # inside loss_fn (several forwards, model methods) sees the substituted ones.
        self._objective = LossModule(model, loss_fn)
        self.chunks = (_concatenated(list(batches), _activation_bytes(model, loss_fn, batches[0])) if concatenate
                       else [(batch, 1) for batch in batches])
        self.block = block if block is not None else self._default_block()

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        block = v[:, None] if v.dim() == 1 else v  # (dim, k)
        if block.shape[0] != self.dim:
            raise ValueError(f"expected vectors of length {self.dim}, got shape {tuple(v.shape)}")
        block = block.to(self.device, self.dtype)
        k = block.shape[1]
        sizes = near_equal(k, self.block)  # 33 -> 17 + 16, not 32 + 1; per pass, (k_i, *shape) per parameter
        passes = [[piece.T.reshape(size, *p.shape) for piece, p in zip(part.split(self._sizes), self.params)]
                  for part, size in zip(block.split(sizes, dim=1), sizes)]
        product = self._forward_over_reverse if self.mode == "forward_over_reverse" else self._reverse_over_reverse
        sums: list[list[torch.Tensor | None]] = [[None] * len(self.params) for _ in passes]  # per pass, parameter
        for batch, merged in self.chunks:
            for pass_sums, pieces in zip(sums, product(batch, passes)):
                for i, piece in enumerate(pieces):
                    if piece is not None:
                        piece = piece * merged if merged > 1 else piece  # a chunk's mean stands for `merged` batches
                        pass_sums[i] = piece if pass_sums[i] is None else pass_sums[i] + piece
        total = torch.cat([self._flatten(pass_sums, size) for pass_sums, size in zip(sums, sizes)], dim=1)
        total /= self._count  # (dim, k)
        self.calls += k
        return total[:, 0] if v.dim() == 1 else total

    def _default_block(self) -> int:
        """Passes of one vector for convolutions on the CPU, else as many vectors as PASS_BYTES allows
        (counted on the first concatenated batch), at most BLOCK."""
        convolutional = any(isinstance(m, nn.modules.conv._ConvNd) for m in self.model.modules())
        if convolutional and self.device.type == "cpu":
            return 1
        return max(1, min(BLOCK, PASS_BYTES // max(1, _activation_bytes(self.model, self.loss_fn, self.chunks[0][0]))))

    def _flatten(self, pieces: Sequence[torch.Tensor | None], k: int) -> torch.Tensor:
        """Per-parameter (k, *shape) products as one (dim, k) block; None (no dependence) is zero."""
        return torch.cat([piece.reshape(k, -1) if piece is not None else
                          torch.zeros(k, size, dtype=self.dtype, device=self.device)
                          for piece, size in zip(pieces, self._sizes)], dim=1).T

    def _forward_over_reverse(self, batch: Any, passes: list[list[torch.Tensor]]) -> list[list[torch.Tensor]]:
        """jvp of the gradient, vmapped over each pass's vectors: no graph is kept between calls, and a
        pass's k tangents go through every layer together. Per pass, (k, *shape) per parameter in and out."""
        primals = {f"model.{name}": p.detach() for name, p in zip(self.names, self.params)}

        def batch_loss(params: dict[str, torch.Tensor]) -> torch.Tensor:
            return torch.func.functional_call(self._objective, params, (batch,))

        gradient = torch.func.grad(batch_loss)

        def product(pieces: list[torch.Tensor]) -> list[torch.Tensor]:
            _, hv = torch.func.jvp(gradient, (primals,), ({f"model.{name}": t for name, t in zip(self.names, pieces)},))
            # func.grad gives unused parameters a zero gradient, hence a zero product.
            return [hv[f"model.{name}"] for name in self.names]

        results = []
        for tangents in passes:
            if len(tangents[0]) == 1:  # one vector: no vmap (and none of its overhead)
                results.append([hv[None] for hv in product([t[0] for t in tangents])])
            else:
                results.append(torch.func.vmap(product)(tangents))
        return results

    @torch.enable_grad()
    def _reverse_over_reverse(self, batch: Any, passes: list[list[torch.Tensor]]) -> list[list[torch.Tensor | None]]:
        """Double backward: the batch's gradient graph is built once and differentiated once more per
        pass, with the pass's k vectors as a batch of output gradients (``is_grads_batched``: vmap over
        the second backward), so every layer multiplies k columns at once. Per pass, (k, *shape) per
        parameter in and out."""
        loss = self.loss_fn(self.model, batch)
        grads = torch.autograd.grad(loss, self.params, create_graph=True, allow_unused=True)
        # A gradient that is None (parameter unused) or constant (loss linear in it) has no
        # second derivative: those pieces of v contribute nothing.
        live = [i for i, g in enumerate(grads) if g is not None and g.requires_grad]
        if not live:
            return [[None] * len(self.params) for _ in passes]
        outputs = [grads[i] for i in live]
        results = []
        for j, tangents in enumerate(passes):
            keep = j < len(passes) - 1  # the graph serves every pass
            if len(tangents[0]) == 1:
                hv = torch.autograd.grad(outputs, self.params, grad_outputs=[tangents[i][0] for i in live],
                                         retain_graph=keep, allow_unused=True)
                results.append([None if piece is None else piece[None] for piece in hv])
            else:
                results.append(list(torch.autograd.grad(outputs, self.params, grad_outputs=[tangents[i] for i in live],
                                                        retain_graph=keep, is_grads_batched=True, allow_unused=True)))
        return results


def _concatenated(batches: list[Any], activation_bytes: int) -> list[tuple[Any, int]]:
    """Runs of consecutive batches with the same tensor shapes (a tensor, or a tuple or list of tensors),
    each run concatenated along the first dimension into batches of at most PASS_BYTES / 4 of activations
    (`activation_bytes` per batch), with how many batches each holds. A batch of another shape or kind
    stays as it is: the mean of per-batch means weights every batch alike, which only batches of one
    size keep when concatenated."""
    most = max(1, PASS_BYTES // 4 // max(1, activation_bytes))
    chunks: list[tuple[Any, int]] = []
    run: list[Any] = []

    def flush() -> None:
        for start in range(0, len(run), most):
            part = run[start:start + most]
            chunks.append((part[0] if len(part) == 1 else _cat(part), len(part)))
        run.clear()

    for batch in batches:
        if run and _shapes(batch) != _shapes(run[0]):
            flush()
        if _shapes(batch) is None:
            chunks.append((batch, 1))
        else:
            run.append(batch)
    flush()
    return chunks


def _shapes(batch: Any) -> tuple | None:
    """The shapes of a batch's tensors, None for a batch that is not a tensor or a tuple/list of tensors."""
    parts = batch if type(batch) in (tuple, list) else (batch,)
    if not parts or not all(isinstance(t, torch.Tensor) and t.dim() > 0 for t in parts):
        return None
    return (type(batch), tuple(t.shape for t in parts))


def _cat(batches: list[Any]) -> Any:
    if isinstance(batches[0], torch.Tensor):
        return torch.cat(batches)
    return type(batches[0])(torch.cat(parts) for parts in zip(*batches))


def near_equal(total: int, most: int) -> list[int]:
    """`total` split into the fewest parts of at most `most`, their sizes differing by at most one."""
    count = -(-total // most)
    return [total // count + (i < total % count) for i in range(count)]


def _activation_bytes(model: nn.Module, loss_fn: LossFn, batch: Any) -> int:
    """Bytes of the outputs of the model's leaf modules in one evaluation of the loss on `batch`."""
    total = 0

    def count(module: nn.Module, inputs: Any, output: Any) -> None:
        nonlocal total
        for tensor in output if isinstance(output, (tuple, list)) else (output,):
            if isinstance(tensor, torch.Tensor):
                total += tensor.numel() * tensor.element_size()

    handles = [m.register_forward_hook(count) for m in model.modules() if next(m.children(), None) is None]
    try:
        with torch.enable_grad():  # as the products evaluate it (a loss may differentiate itself)
            loss_fn(model, batch)
    finally:
        for handle in handles:
            handle.remove()
    return total


def make_hvp(model: nn.Module, loss_fn: LossFn, batches: Sequence[Any], mode: str = "reverse_over_reverse",
             block: int | None = None, concatenate: bool = False) -> HVP:
    """The Hessian-vector product of ``mean(loss_fn(model, b) for b in batches)``.

    The model must be in eval mode (ValueError otherwise); buffers such as BatchNorm's running
    statistics are used as they are. Parameters that get no gradient have zero Hessian rows.

    ``mode``: "reverse_over_reverse" (double backward, the default) or "forward_over_reverse" (jvp
    of ``torch.func.grad`` through ``functional_call``, vmapped over a pass). On a 2-core CPU double
    backward measured faster per product: about 3x for one vector on the digits MLP (functorch's
    per-call overhead), 1.4-1.7x in passes of 16-99 vectors on it, 1.5-1.8x on a BatchNorm ResNet-18
    of width 8 one vector at a time; it builds each batch's gradient graph once for all the passes of
    a block, and it works when
    ``loss_fn`` itself calls ``torch.autograd.grad`` (physics-informed losses), which
    forward-over-reverse does not support.

    ``block``: vectors per pass, at most. None (the default): 1 for a model with convolutions on the
    CPU (see ``BLOCK``), else as many as keep a pass under ``PASS_BYTES`` (about one batch's activations
    per vector, counted on the first batch), at most ``BLOCK``: 32 for the digits MLP or a ResNet-18 of
    width 8 at batch 64, 4 at width 64, 1 at width 256. 1: one vector at a time.

    ``concatenate``: join batches of one shape into larger ones (see the module docstring); only for a
    ``loss_fn`` that is the mean of per-example losses, whose mean over the batches it keeps.
    """
    return HVP(model, loss_fn, batches, mode, block, concatenate)
