"""Hessian top eigenvalue and trace of a training loss, from Hessian-vector products (HVPs).

The loss is the mean over fixed batches of each batch's mean loss; the Hessian is taken with
respect to the parameters that require grad, flattened in ``named_parameters()`` order. Nothing
here forms the Hessian: every estimate is built from products ``H v`` and reports how many it used,
because that count, not the wall time, is what makes two estimates comparable.

An *operator* is anything that maps a (dim,) tensor to a (dim,) tensor and a (dim, k) block to a
(dim, k) block: an :class:`HVP`, or ``lambda v: A @ v`` for an explicit matrix. Its ``dtype`` and
``device`` attributes, where it has them, say what tensors it takes (float64 on the CPU otherwise);
the estimators do their own linear algebra in float64 on the CPU.

Hutch++ and Hutchinson hand the operator whole blocks of probes, which an :class:`HVP` applies in
passes of up to ``BLOCK`` vectors (as curvlinops does with ``vmap``); Lanczos is sequential.

PyHessian's traps, avoided here: its trace stopping test divides by the signed running mean (a
negative trace stops it after two samples), its ``trace()`` returns the samples rather than their
mean, and its power iteration finds the eigenvalue of largest *magnitude*. ``top_eigenvalue`` is the
largest *algebraic* eigenvalue (the sharpness reported in the literature); the two differ only when
the most negative eigenvalue outweighs the most positive one.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh
from torch import nn

from zoobench.landscape.weightspace import LossFn, LossModule

Operator = Callable[[torch.Tensor], torch.Tensor]
MODES = ("forward_over_reverse", "reverse_over_reverse")
# Vectors per pass of an HVP, at most (one (k, ...) batch through every layer): on the digits MLP (2-core
# CPU) 1.3-1.5 ms per product in passes of 16-99 vectors against 5.7 ms one at a time; convolutions on
# the CPU lose (ResNet-18 width 8: 2.3-2.6x slower per product in passes of 32), so they get one.
BLOCK = 32
# Memory a pass may add: each vector adds about one batch's activations (ResNet-18: 0.8x its layers'
# output bytes, on top of 2.6x for the gradient graph), so wide models get fewer vectors per pass.
PASS_BYTES = 2 * 2**30


class HVP:
    """``v -> H v`` for the mean loss over fixed batches, one batch in memory at a time, a (dim, k)
    block in passes of at most ``block`` vectors.

    Use :func:`make_hvp` to build one. ``calls`` counts the products done: one per vector, so a
    (dim, k) block adds k.
    """

    def __init__(self, model: nn.Module, loss_fn: LossFn, batches: Sequence[Any], mode: str,
                 block: int | None = None) -> None:
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
        self.model, self.loss_fn, self.batches, self.mode = model, loss_fn, list(batches), mode
        self.names = [name for name, _ in named]
        self.params = [p for _, p in named]
        self._sizes = [p.numel() for p in self.params]
        self.dim = sum(self._sizes)
        self.dtype, self.device = self.params[0].dtype, self.params[0].device
        self.calls = 0
        # functional_call substitutes the parameters for the whole call, so every use of the model
        # inside loss_fn (several forwards, model methods) sees the substituted ones.
        self._objective = LossModule(model, loss_fn)
        self.block = block if block is not None else self._default_block()

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        block = v[:, None] if v.dim() == 1 else v  # (dim, k)
        if block.shape[0] != self.dim:
            raise ValueError(f"expected vectors of length {self.dim}, got shape {tuple(v.shape)}")
        block = block.to(self.device, self.dtype)
        k = block.shape[1]
        sizes = _near_equal(k, self.block)  # 33 -> 17 + 16, not 32 + 1; per pass, (k_i, *shape) per parameter
        passes = [[piece.T.reshape(size, *p.shape) for piece, p in zip(part.split(self._sizes), self.params)]
                  for part, size in zip(block.split(sizes, dim=1), sizes)]
        product = self._forward_over_reverse if self.mode == "forward_over_reverse" else self._reverse_over_reverse
        sums: list[list[torch.Tensor | None]] = [[None] * len(self.params) for _ in passes]  # per pass, parameter
        for batch in self.batches:
            for pass_sums, pieces in zip(sums, product(batch, passes)):
                for i, piece in enumerate(pieces):
                    if piece is not None:
                        pass_sums[i] = piece if pass_sums[i] is None else pass_sums[i] + piece
        total = torch.cat([self._flatten(pass_sums, size) for pass_sums, size in zip(sums, sizes)], dim=1)
        total /= len(self.batches)  # (dim, k)
        self.calls += k
        return total[:, 0] if v.dim() == 1 else total

    def _default_block(self) -> int:
        """Passes of one vector for convolutions on the CPU, else as many vectors as PASS_BYTES allows
        (counted on the first batch), at most BLOCK."""
        convolutional = any(isinstance(m, nn.modules.conv._ConvNd) for m in self.model.modules())
        if convolutional and self.device.type == "cpu":
            return 1
        return max(1, min(BLOCK, PASS_BYTES // max(1, _activation_bytes(self.model, self.loss_fn, self.batches[0]))))

    def as_linear_operator(self) -> LinearOperator:
        """A float64 scipy operator that runs the products in the model's dtype and device."""
        return _scipy_operator(self, self.dim)

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


def _near_equal(total: int, most: int) -> list[int]:
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
             block: int | None = None) -> HVP:
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
    """
    return HVP(model, loss_fn, batches, mode, block)


@dataclass(frozen=True)
class TraceEstimate:
    value: float
    std_error: float  # of the stochastic part; 0 where the estimate is exact, NaN from one sample
    hvps: int


class _Counted:
    """An operator applied in float64 on the CPU, a whole block per call, counting the vectors."""

    def __init__(self, operator: Operator) -> None:
        self.operator = operator
        self.dtype = getattr(operator, "dtype", torch.float64)
        self.device = getattr(operator, "device", "cpu")
        self.hvps = 0

    def __call__(self, block: torch.Tensor) -> torch.Tensor:
        """(dim, k) float64 -> (dim, k) float64."""
        self.hvps += block.shape[1]
        return self.operator(block.to(self.device, self.dtype)).to("cpu", torch.float64)


class _BudgetSpent(Exception):
    pass


def _scipy_operator(operator: Operator, dim: int, budget: int | None = None) -> LinearOperator:
    """A symmetric float64 LinearOperator; past ``budget`` products it raises _BudgetSpent."""
    counted = operator if isinstance(operator, _Counted) else _Counted(operator)

    def matmat(x: np.ndarray) -> np.ndarray:
        block = torch.from_numpy(np.asarray(x, dtype=np.float64).reshape(dim, -1))  # (dim, k)
        if budget is not None and counted.hvps + block.shape[1] > budget:
            raise _BudgetSpent
        return counted(block).numpy().reshape(x.shape)

    return LinearOperator((dim, dim), matvec=matmat, matmat=matmat, rmatvec=matmat, dtype=np.float64)


def top_eigenvalue(operator: Operator, dim: int, tol: float = 1e-3, max_iter: int = 100,
                   seed: int = 0) -> tuple[float, int]:
    """The largest algebraic eigenvalue, by Lanczos (ARPACK's ``eigsh``, ``which="LA"``), and the
    number of products it used.

    ``tol`` is ARPACK's: the Ritz residual relative to the eigenvalue, ``|H x - l x| <= tol |l|``,
    which bounds the eigenvalue's error well below ``tol`` once the top eigenvalue is separated.
    ``max_iter`` caps the products; where Lanczos has not converged within them the value is NaN
    (with a warning) rather than an unconverged guess.
    """
    counted = _Counted(operator)
    generator = torch.Generator().manual_seed(seed)
    v0 = torch.randn(dim, generator=generator, dtype=torch.float64).numpy()
    linear = _scipy_operator(counted, dim, budget=max_iter)
    # A small Krylov space: ARPACK tests convergence after every restart, i.e. every ncv - 1 products.
    # A well separated top eigenvalue (a network's usual outlier) then stops after about 7 products,
    # where the default ncv=20 spends 21; on a clustered spectrum both took about the same number.
    ncv = max(2, min(dim, 6, max_iter))
    try:
        value = eigsh(linear, k=1, which="LA", tol=tol, maxiter=max_iter, ncv=ncv, v0=v0,
                      return_eigenvectors=False)[0]
    except (_BudgetSpent, ArpackNoConvergence):
        warnings.warn(f"Lanczos did not converge to tol={tol} within {max_iter} Hessian-vector products",
                      RuntimeWarning, stacklevel=2)
        value = math.nan
    return float(value), counted.hvps


def _rademacher(dim: int, count: int, generator: torch.Generator) -> torch.Tensor:
    """(dim, count) float64 entries +-1."""
    return torch.randint(0, 2, (dim, count), generator=generator).to(torch.float64) * 2 - 1


def _quadratic_forms(counted: _Counted, x: torch.Tensor) -> torch.Tensor:
    """(k,) values x_i^T A x_i for the columns of x (dim, k), from one block product."""
    return (x * counted(x)).sum(dim=0)


def _mean_and_error(samples: torch.Tensor) -> tuple[float, float]:
    n = samples.numel()
    std_error = samples.std().item() / math.sqrt(n) if n > 1 else math.nan
    return samples.mean().item(), std_error


def hutchinson_trace(operator: Operator, dim: int, max_samples: int = 100, tol: float = 1e-3,
                     seed: int = 0, block: int = BLOCK) -> TraceEstimate:
    """Hutchinson's estimate with Rademacher probes, one product per probe, handed over in blocks of at most ``block``.

    Stops at ``max_samples``, or earlier once the running mean changes by less than ``tol`` relative
    to its absolute value (the field's rule, with the abs() that PyHessian lacks; from two samples on,
    so that the standard error exists). The rule says little about accuracy: ``std_error`` does.

    The rule is checked after every sample, in order, as if the probes came one at a time; where it
    fires inside a block, the rest of that block (already paid for) is kept, so the estimate may use
    up to ``block - 1`` more samples than the rule asked for, never fewer, and ``hvps`` counts them.
    With ``tol=0`` the rule never fires and all ``max_samples`` probes go in one call. The probes are
    the same for every ``block``, so with ``tol=0`` the estimate does not depend on it, and
    ``block=1`` is the one-probe-at-a-time estimator exactly.
    """
    if block < 1:
        raise ValueError(f"block must be at least 1, got {block}")
    counted = _Counted(operator)
    generator = torch.Generator().manual_seed(seed)
    if tol <= 0:
        block = max_samples
    sizes = _near_equal(max_samples, block)  # 100 -> 4 x 25 rather than 3 x 32 + 4
    samples: list[float] = []
    stopped = False
    for size in sizes:
        # Column by column, so that the probes do not depend on the block sizes.
        z = torch.cat([_rademacher(dim, 1, generator) for _ in range(size)], dim=1)  # (dim, size)
        for value in _quadratic_forms(counted, z).tolist():
            previous = sum(samples) / len(samples) if samples else math.nan
            samples.append(value)
            mean = sum(samples) / len(samples)
            stopped = stopped or (len(samples) >= 2 and abs(mean - previous) < tol * abs(previous))
        if stopped:
            break
    value, std_error = _mean_and_error(torch.tensor(samples, dtype=torch.float64))
    return TraceEstimate(value, std_error, counted.hvps)


def hutchpp_trace(operator: Operator, dim: int, hvps: int = 100, seed: int = 0) -> TraceEstimate:
    """Hutch++ (Meyer, Musco, Musco, Woodruff 2021) with a budget of ``hvps`` products.

    A third of the budget sketches the range of the operator (Q = orth(A S)), a third takes the trace
    of A on that range exactly, and the rest runs Hutchinson on what is left, (I - QQ^T) A (I - QQ^T).
    Where a few large eigenvalues dominate, as in a trained network's Hessian, the sketch captures
    them and the same budget gives a much smaller error (benchmarks/hessian_vs_pyhessian.py: 6-18x
    fewer products than Hutchinson for the same standard error). Where they do not, as at
    initialization, the sketch removes little and the residual, estimated from a third of the
    budget, is noisier than plain Hutchinson with all of it. Exact (std_error 0) once the sketch
    spans everything, i.e. when ``hvps >= 3 dim``; then fewer than ``hvps`` products are used.

    Memory: up to three float64 (dim, hvps / 3) blocks on the CPU (sketch, basis, probes), e.g.
    9 GB for 11M parameters (ResNet-18 at width 64) and 100 products, and while the operator runs, a
    few (dim, hvps / 3) blocks in the model's dtype on its device (the block handed over, its
    product, an HVP's passes).
    """
    counted = _Counted(operator)
    generator = torch.Generator().manual_seed(seed)
    sketch = hvps // 3
    probes = hvps - 2 * sketch
    value = 0.0
    q = torch.zeros(dim, 0, dtype=torch.float64)  # (dim, r) orthonormal basis of the sketched range
    if sketch:
        q = torch.linalg.qr(counted(_rademacher(dim, sketch, generator))).Q  # (dim, min(dim, sketch))
        value = _quadratic_forms(counted, q).sum().item()  # trace(Q^T A Q)
    if q.shape[1] == dim:
        return TraceEstimate(value, 0.0, counted.hvps)
    g = _rademacher(dim, probes, generator)
    g -= q @ (q.T @ g)  # (dim, probes), projected off the sketched range
    residual, std_error = _mean_and_error(_quadratic_forms(counted, g))
    return TraceEstimate(value + residual, std_error, counted.hvps)


def hessian_metrics(model: nn.Module, loss_fn: LossFn, batches: Sequence[Any], mode: str = "reverse_over_reverse",
                    trace: str = "hutch++", max_hvps: int = 100, tol: float = 1e-3, seed: int = 0) -> dict[str, float]:
    """Top eigenvalue (Lanczos) and trace (``trace``: "hutch++" or "hutchinson") of the Hessian of
    the mean loss over ``batches``, with the number of products each used.

    ``max_hvps`` caps each estimate: Lanczos stops earlier at ``tol`` (NaN if it cannot), Hutch++
    spends exactly that budget, Hutchinson stops earlier by its relative-change rule at ``tol``.
    """
    hvp = make_hvp(model, loss_fn, batches, mode)
    eigenvalue, eigenvalue_hvps = top_eigenvalue(hvp, hvp.dim, tol=tol, max_iter=max_hvps, seed=seed)
    if trace == "hutch++":
        estimate = hutchpp_trace(hvp, hvp.dim, hvps=max_hvps, seed=seed)
    elif trace == "hutchinson":
        estimate = hutchinson_trace(hvp, hvp.dim, max_samples=max_hvps, tol=tol, seed=seed)
    else:
        raise ValueError(f"unknown trace estimator {trace!r}; expected 'hutch++' or 'hutchinson'")
    return {
        "hessian_top_eigenvalue": eigenvalue,
        "hessian_top_eigenvalue_hvps": eigenvalue_hvps,
        "hessian_trace": estimate.value,
        "hessian_trace_std_error": estimate.std_error,
        "hessian_trace_hvps": estimate.hvps,
    }
