"""Hessian top eigenvalue and trace of a training loss, from Hessian-vector products (HVPs).

The loss is the mean over fixed batches of each batch's mean loss; the Hessian is taken with
respect to the parameters that require grad, flattened in ``named_parameters()`` order. Nothing
here forms the Hessian: every estimate is built from products ``H v`` and reports how many it used,
because that count, not the wall time, is what makes two estimates comparable.

An *operator* is anything that maps a (dim,) tensor to a (dim,) tensor and a (dim, k) block to a
(dim, k) block: an :class:`HVP`, or ``lambda v: A @ v`` for an explicit matrix. Its ``dtype`` and
``device`` attributes, where it has them, say what tensors it takes (float64 on the CPU otherwise);
the estimators do their own linear algebra in float64 on the CPU.

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
# Vectors per operator call: bounds the memory of a block while keeping most of the saving of a
# gradient graph shared by the block (its forward-backward is paid once per 16 products).
CHUNK = 16


class HVP:
    """``v -> H v`` for the mean loss over fixed batches, one batch in memory at a time.

    Use :func:`make_hvp` to build one. ``calls`` counts the products done: one per vector, so a
    (dim, k) block adds k.
    """

    def __init__(self, model: nn.Module, loss_fn: LossFn, batches: Sequence[Any], mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown HVP mode {mode!r}; expected one of {MODES}")
        if model.training:
            # Train mode would make the Hessian that of a different function on every product:
            # BatchNorm would normalize with batch statistics (and update its running stats), dropout
            # would draw new masks.
            raise ValueError("the model must be in eval mode (call model.eval()) for Hessian metrics")
        if not batches:
            raise ValueError("at least one batch is needed")
        named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
        if not named:
            raise ValueError("the model has no parameters that require grad")
        self.model, self.loss_fn, self.batches, self.mode = model, loss_fn, list(batches), mode
        self.names = [name for name, _ in named]
        self.params = [p for _, p in named]
        self.dim = sum(p.numel() for p in self.params)
        self.dtype, self.device = self.params[0].dtype, self.params[0].device
        self.calls = 0
        # functional_call substitutes the parameters for the whole call, so every use of the model
        # inside loss_fn (several forwards, model methods) sees the substituted ones.
        self._objective = LossModule(model, loss_fn)

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        block = v[:, None] if v.dim() == 1 else v  # (dim, k)
        if block.shape[0] != self.dim:
            raise ValueError(f"expected vectors of length {self.dim}, got shape {tuple(v.shape)}")
        block = block.to(self.device, self.dtype)
        columns = [self._split(block[:, j]) for j in range(block.shape[1])]
        product = self._forward_over_reverse if self.mode == "forward_over_reverse" else self._reverse_over_reverse
        total = torch.zeros_like(block)  # (dim, k)
        for batch in self.batches:
            total += product(batch, columns)
        self.calls += block.shape[1]
        total /= len(self.batches)
        return total[:, 0] if v.dim() == 1 else total

    def as_linear_operator(self) -> LinearOperator:
        """A float64 scipy operator that runs the products in the model's dtype and device."""
        return _scipy_operator(self, self.dim)

    def _split(self, flat: torch.Tensor) -> list[torch.Tensor]:
        """A flat (dim,) vector as views shaped like the parameters."""
        pieces = torch.split(flat, [p.numel() for p in self.params])
        return [piece.view_as(p) for piece, p in zip(pieces, self.params)]

    def _flatten(self, pieces: Sequence[torch.Tensor | None]) -> torch.Tensor:
        """Per-parameter products as one (dim,) vector; None (no dependence) is a zero block."""
        return torch.cat([(piece if piece is not None else torch.zeros_like(p)).reshape(-1)
                          for piece, p in zip(pieces, self.params)])

    def _forward_over_reverse(self, batch: Any, columns: list[list[torch.Tensor]]) -> torch.Tensor:
        """jvp of the gradient: no graph is kept between products. Returns (dim, k)."""
        primals = {f"model.{name}": p.detach() for name, p in zip(self.names, self.params)}

        def batch_loss(params: dict[str, torch.Tensor]) -> torch.Tensor:
            return torch.func.functional_call(self._objective, params, (batch,))

        gradient = torch.func.grad(batch_loss)
        products = []
        for pieces in columns:
            tangents = {f"model.{name}": piece for name, piece in zip(self.names, pieces)}
            _, hv = torch.func.jvp(gradient, (primals,), (tangents,))
            # func.grad gives unused parameters a zero gradient, hence a zero product.
            products.append(self._flatten([hv[f"model.{name}"] for name in self.names]))
        return torch.stack(products, dim=1)

    @torch.enable_grad()
    def _reverse_over_reverse(self, batch: Any, columns: list[list[torch.Tensor]]) -> torch.Tensor:
        """Double backward; the batch's gradient graph is built once and reused for every column of
        the block, so a block of k costs one forward-backward plus k second backwards. Returns (dim, k)."""
        loss = self.loss_fn(self.model, batch)
        grads = torch.autograd.grad(loss, self.params, create_graph=True, allow_unused=True)
        # A gradient that is None (parameter unused) or constant (loss linear in it) has no
        # second derivative: those pieces of v contribute nothing.
        live = [(g, i) for i, g in enumerate(grads) if g is not None and g.requires_grad]
        if not live:
            return torch.zeros(self.dim, len(columns), dtype=self.dtype, device=self.device)
        products = []
        for j, pieces in enumerate(columns):
            g_dot_v = sum((g * pieces[i]).sum() for g, i in live)
            hv = torch.autograd.grad(g_dot_v, self.params, retain_graph=j < len(columns) - 1, allow_unused=True)
            products.append(self._flatten(hv))
        return torch.stack(products, dim=1)


def make_hvp(model: nn.Module, loss_fn: LossFn, batches: Sequence[Any], mode: str = "reverse_over_reverse") -> HVP:
    """The Hessian-vector product of ``mean(loss_fn(model, b) for b in batches)``.

    The model must be in eval mode (ValueError otherwise); buffers such as BatchNorm's running
    statistics are used as they are. Parameters that get no gradient have zero Hessian rows.

    ``mode``: "reverse_over_reverse" (double backward, the default) or "forward_over_reverse" (jvp
    of ``torch.func.grad`` through ``functional_call``). On a 2-core CPU double backward measured
    faster per product (1.2-1.4x on a BatchNorm ResNet-18, about 3x on a small MLP, where functorch's
    per-call overhead dominates), its blocks reuse one gradient graph per batch, and it works when
    ``loss_fn`` itself calls ``torch.autograd.grad`` (physics-informed losses), which
    forward-over-reverse does not support.
    """
    return HVP(model, loss_fn, batches, mode)


@dataclass(frozen=True)
class TraceEstimate:
    value: float
    std_error: float  # of the stochastic part; 0 where the estimate is exact, NaN from one sample
    hvps: int


class _Counted:
    """An operator applied in float64 on the CPU, CHUNK vectors at a time, counting the vectors."""

    def __init__(self, operator: Operator) -> None:
        self.operator = operator
        self.dtype = getattr(operator, "dtype", torch.float64)
        self.device = getattr(operator, "device", "cpu")
        self.hvps = 0

    def __call__(self, block: torch.Tensor) -> torch.Tensor:
        """(dim, k) float64 -> (dim, k) float64."""
        self.hvps += block.shape[1]
        return torch.cat([self.operator(part.to(self.device, self.dtype)).to("cpu", torch.float64)
                          for part in block.split(CHUNK, dim=1)], dim=1)


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
    """(k,) values x_i^T A x_i for the columns of x (dim, k), without holding all of A x."""
    return torch.cat([(part * counted(part)).sum(dim=0) for part in x.split(CHUNK, dim=1)])


def _mean_and_error(samples: torch.Tensor) -> tuple[float, float]:
    n = samples.numel()
    std_error = samples.std().item() / math.sqrt(n) if n > 1 else math.nan
    return samples.mean().item(), std_error


def hutchinson_trace(operator: Operator, dim: int, max_samples: int = 100, tol: float = 1e-3,
                     seed: int = 0) -> TraceEstimate:
    """Hutchinson's estimate with Rademacher probes, one product per probe.

    Stops at ``max_samples``, or earlier once the running mean changes by less than ``tol`` relative
    to its absolute value (the field's rule, with the abs() that PyHessian lacks; from two samples on,
    so that the standard error exists). The rule says little about accuracy: ``std_error`` does.
    """
    counted = _Counted(operator)
    generator = torch.Generator().manual_seed(seed)
    samples: list[float] = []
    mean = math.nan
    for n in range(1, max_samples + 1):
        z = _rademacher(dim, 1, generator)  # (dim, 1)
        samples.append((z * counted(z)).sum().item())
        previous, mean = mean, sum(samples) / n
        if n >= 2 and abs(mean - previous) < tol * abs(previous):
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
    9 GB for 11M parameters (ResNet-18 at width 64) and 100 products.
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
