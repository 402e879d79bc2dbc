"""Hessian top eigenvalue and trace of a training loss, from Hessian-vector products (HVPs,
`zoobench.landscape.hvp`).

Nothing here forms the Hessian: every estimate is built from products ``H v`` and reports how many it
used, because that count, not the wall time, is what makes two estimates comparable.

An *operator* is anything that maps a (dim,) tensor to a (dim,) tensor and a (dim, k) block to a
(dim, k) block: an :class:`~zoobench.landscape.hvp.HVP`, or ``lambda v: A @ v`` for an explicit
matrix. Its ``dtype`` and ``device`` attributes, where it has them, say what tensors it takes
(float64 on the CPU otherwise); the estimators do their own linear algebra in float64 on the CPU.
Hutch++ and Hutchinson hand the operator whole blocks of probes; Lanczos is sequential.

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

from zoobench.landscape.hvp import BLOCK, make_hvp, near_equal
from zoobench.landscape.weightspace import LossFn

Operator = Callable[[torch.Tensor], torch.Tensor]
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


def scipy_operator(operator: Operator, dim: int, budget: int | None = None) -> LinearOperator:
    """`operator` as a symmetric float64 scipy LinearOperator; past ``budget`` products it raises _BudgetSpent."""
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
    linear = scipy_operator(counted, dim, budget=max_iter)
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
    sizes = near_equal(max_samples, block)  # 100 -> 4 x 25 rather than 3 x 32 + 4
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
                    trace: str = "hutch++", max_hvps: int = 100, tol: float = 1e-3, seed: int = 0,
                    concatenate: bool = False) -> dict[str, float]:
    """Top eigenvalue (Lanczos) and trace (``trace``: "hutch++" or "hutchinson") of the Hessian of
    the mean loss over ``batches``, with the number of products each used.

    ``max_hvps`` caps each estimate: Lanczos stops earlier at ``tol`` (NaN if it cannot), Hutch++
    spends exactly that budget, Hutchinson stops earlier by its relative-change rule at ``tol``.
    ``concatenate`` as for :func:`make_hvp`.
    """
    hvp = make_hvp(model, loss_fn, batches, mode, concatenate=concatenate)
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
