"""Hessian metrics against float64 brute force: the exact Hessian of tiny models (both HVP modes,
BatchNorm, unused parameters, a physics-informed loss) and explicit matrices with known spectra and
traces for the estimators."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from zoobench.landscape import hvp as hvp_module
from zoobench.landscape.hessian import (
    hessian_metrics, hutchinson_trace, hutchpp_trace, scipy_operator, top_eigenvalue,
)
from zoobench.landscape.hvp import MODES, make_hvp


def cross_entropy(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    inputs, labels = batch
    return F.cross_entropy(model(inputs), labels)


def exact_hessian(model: nn.Module, loss_fn, batches) -> torch.Tensor:
    """(dim, dim) Hessian of the mean batch loss over the parameters that require grad, by
    torch.autograd.functional over the flattened parameters (independent of the HVP code)."""
    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    sizes = [p.numel() for _, p in named]

    def mean_loss(theta: torch.Tensor) -> torch.Tensor:
        params = {name: piece.view_as(p) for (name, p), piece in zip(named, theta.split(sizes))}

        def functional(*args):
            return torch.func.functional_call(model, params, args)

        return sum(loss_fn(functional, batch) for batch in batches) / len(batches)

    theta = torch.cat([p.detach().reshape(-1) for _, p in named])
    return torch.autograd.functional.hessian(mean_loss, theta)


def classification_batches(inputs: int, classes: int, seed: int = 0, sizes=(8, 8)):
    generator = torch.Generator().manual_seed(seed)
    return [(torch.randn(n, inputs, generator=generator, dtype=torch.float64),
             torch.randint(0, classes, (n,), generator=generator)) for n in sizes]


@pytest.fixture(scope="module")
def tiny():
    """A 5 -> 4 -> 3 tanh MLP in float64 (39 parameters), two batches, and its exact Hessian."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3)).double().eval()
    batches = classification_batches(5, 3)
    return model, batches, exact_hessian(model, cross_entropy, batches)


def spectrum_matrix(eigenvalues: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """A dense symmetric matrix with the given eigenvalues and random eigenvectors."""
    generator = torch.Generator().manual_seed(seed)
    n = len(eigenvalues)
    q = torch.linalg.qr(torch.randn(n, n, generator=generator, dtype=torch.float64)).Q
    return q @ torch.diag(eigenvalues.double()) @ q.T


@pytest.mark.parametrize("mode", MODES)
def test_hvp_equals_the_exact_hessian_times_vectors(tiny, mode):
    model, batches, hessian = tiny
    hvp = make_hvp(model, cross_entropy, batches, mode)
    assert hvp.dim == hessian.shape[0] == 39
    block = torch.randn(hvp.dim, 3, dtype=torch.float64)  # (dim, 3)
    torch.testing.assert_close(hvp(block[:, 0]), hessian @ block[:, 0], rtol=0, atol=1e-10)
    torch.testing.assert_close(hvp(block), hessian @ block, rtol=0, atol=1e-10)
    assert hvp.calls == 4  # one vector, then a block of three


def test_scipy_operator_is_float64_and_runs_the_model_dtype(tiny):
    model, batches, hessian = tiny
    single = make_hvp(copy.deepcopy(model).float(), cross_entropy, [(x.float(), y) for x, y in batches])
    operator = scipy_operator(single, single.dim)
    v = torch.randn(single.dim, dtype=torch.float64)
    assert operator.dtype == np.float64
    result = torch.from_numpy(operator @ v.numpy())
    assert result.dtype == torch.float64
    torch.testing.assert_close(result, hessian @ v, rtol=1e-4, atol=1e-5)  # float32 products
    assert single.calls == 1


def test_top_eigenvalue_is_the_exact_largest_eigenvalue(tiny):
    model, batches, hessian = tiny
    hvp = make_hvp(model, cross_entropy, batches)
    value, hvps = top_eigenvalue(hvp, hvp.dim, tol=1e-3, max_iter=100, seed=0)
    exact = torch.linalg.eigvalsh(hessian)[-1].item()
    assert value == pytest.approx(exact, rel=1e-3)
    assert hvps == hvp.calls <= 100


def test_traces_of_the_tiny_mlp_are_within_three_standard_errors(tiny):
    model, batches, hessian = tiny
    exact = hessian.trace().item()
    hvp = make_hvp(model, cross_entropy, batches)
    for estimate in [hutchinson_trace(hvp, hvp.dim, max_samples=60, tol=1e-3, seed=1),
                     hutchpp_trace(hvp, hvp.dim, hvps=60, seed=1)]:
        assert estimate.std_error > 0
        assert abs(estimate.value - exact) < 3 * estimate.std_error


def test_hutchpp_is_exact_once_the_sketch_spans_every_direction(tiny):
    model, batches, hessian = tiny
    hvp = make_hvp(model, cross_entropy, batches)
    estimate = hutchpp_trace(hvp, hvp.dim, hvps=3 * hvp.dim, seed=0)
    assert estimate.value == pytest.approx(hessian.trace().item(), abs=1e-8)
    assert estimate.std_error == 0
    assert estimate.hvps == hvp.calls == 2 * hvp.dim  # sketch + trace on it; no residual probes left


def test_estimators_on_a_psd_matrix_with_a_known_spectrum():
    eigenvalues = torch.cat([torch.linspace(0.1, 1.0, 19), torch.tensor([5.0])])  # trace 15.5
    matrix = spectrum_matrix(eigenvalues)
    value, hvps = top_eigenvalue(lambda v: matrix @ v, 20, tol=1e-6, seed=3)
    assert value == pytest.approx(5.0, rel=1e-6)
    assert 0 < hvps <= 100
    for estimate in [hutchinson_trace(lambda v: matrix @ v, 20, max_samples=100, tol=1e-3),
                     hutchpp_trace(lambda v: matrix @ v, 20, hvps=30)]:
        assert 0 < estimate.std_error < 2
        assert abs(estimate.value - 15.5) < 3 * estimate.std_error


def test_top_eigenvalue_is_the_largest_algebraic_not_the_largest_magnitude():
    """PyHessian's power iteration would return -8 here; the sharpness is +2."""
    matrix = spectrum_matrix(torch.cat([torch.tensor([-8.0]), torch.linspace(-1.0, 2.0, 29)]))
    value, _ = top_eigenvalue(lambda v: matrix @ v, 30, tol=1e-6)
    assert value == pytest.approx(2.0, rel=1e-6)


def test_top_eigenvalue_past_its_budget_is_nan_with_a_warning():
    matrix = spectrum_matrix(torch.linspace(0.0, 1.0, 200))  # no gap: Lanczos needs many products
    with pytest.warns(RuntimeWarning, match="did not converge"):
        value, hvps = top_eigenvalue(lambda v: matrix @ v, 200, tol=1e-9, max_iter=12)
    assert math.isnan(value)
    assert hvps <= 12


def test_hutchinson_does_not_stop_early_on_a_negative_trace():
    """A signed denominator (PyHessian's) makes the relative change negative, hence "below tol",
    after two samples whenever the running mean is negative."""
    eigenvalues = torch.linspace(-3.0, 1.0, 40)  # trace -40, noisy for Hutchinson
    matrix = spectrum_matrix(eigenvalues, seed=1)
    estimate = hutchinson_trace(lambda v: matrix @ v, 40, max_samples=200, tol=1e-3, seed=0, block=1)
    assert estimate.hvps > 10
    assert estimate.value < 0
    assert abs(estimate.value - eigenvalues.sum().item()) < 3 * estimate.std_error


def test_hutchpp_is_exact_on_a_low_rank_matrix_where_hutchinson_is_not():
    """A rank-5 matrix of dimension 300: the 10-vector sketch of a 30-product budget captures its
    whole range, so Hutch++ is exact to rounding while Hutchinson with 30 probes is a few % off."""
    eigenvalues = torch.cat([torch.tensor([50.0, 20.0, 10.0, 5.0, 1.0]), torch.zeros(295)])
    matrix = spectrum_matrix(eigenvalues, seed=2)
    sketched = hutchpp_trace(lambda v: matrix @ v, 300, hvps=30, seed=0)
    assert sketched.value == pytest.approx(86.0, rel=1e-10)
    assert sketched.std_error < 1e-10
    assert sketched.hvps == 30
    plain = hutchinson_trace(lambda v: matrix @ v, 300, max_samples=30, tol=0.0, seed=0)
    assert plain.hvps == 30
    assert abs(plain.value - 86.0) > 1e-3 * 86.0
    assert plain.std_error > 1e6 * sketched.std_error


def batchnorm_mlp() -> nn.Module:
    """5 -> 6 -> BatchNorm -> ReLU -> 3 in float64, eval mode with non-trivial running statistics."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 3)).double()
    model[1].running_mean.normal_()
    model[1].running_var.uniform_(0.5, 2.0)
    return model.eval()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("net", ["tanh", "batchnorm"])
@pytest.mark.parametrize("block", [1, 3, 32])  # 7 vectors: 7 passes of 1; passes of 3, 2, 2; one pass
def test_a_block_of_products_equals_the_products_one_by_one(tiny, mode, net, block):
    """The block path (batched second backwards sharing one gradient graph, or vmap over jvp) computes
    the same products as one vector at a time, on every batch, BatchNorm (running statistics
    untouched) included."""
    model, batches = (tiny[0], tiny[1]) if net == "tanh" else (batchnorm_mlp(), classification_batches(5, 3, sizes=(8, 5)))
    buffers = {name: b.clone() for name, b in model.named_buffers()}
    hvp = make_hvp(model, cross_entropy, batches, mode, block=block)
    vectors = torch.randn(hvp.dim, 7, generator=torch.Generator().manual_seed(1), dtype=torch.float64)  # (dim, 7)
    together = hvp(vectors)
    one_by_one = torch.stack([hvp(vectors[:, j]) for j in range(7)], dim=1)
    torch.testing.assert_close(together, one_by_one, rtol=0, atol=1e-12)
    assert hvp.calls == 14
    assert all(torch.equal(b, buffers[name]) for name, b in model.named_buffers())


def test_the_vectors_per_pass_follow_the_memory_a_pass_adds(tiny, monkeypatch):
    model, batches, hessian = tiny
    assert make_hvp(model, cross_entropy, batches).block == hvp_module.BLOCK
    # The first batch's leaf outputs: 8 x (4 + 4 + 3) float64 values, 704 bytes per vector.
    monkeypatch.setattr(hvp_module, "PASS_BYTES", 3 * 704)
    hvp = make_hvp(model, cross_entropy, batches)
    assert hvp.block == 3
    block = torch.randn(hvp.dim, 7, dtype=torch.float64)
    torch.testing.assert_close(hvp(block), hessian @ block, rtol=0, atol=1e-10)
    monkeypatch.setattr(hvp_module, "PASS_BYTES", 100)
    assert make_hvp(model, cross_entropy, batches).block == 1


@pytest.mark.parametrize("mode", MODES)
def test_concatenated_batches_keep_the_mean_of_per_batch_means(tiny, mode, monkeypatch):
    """Batches of one shape are joined (fewer, larger passes); a batch of another size stays alone, and
    each joined batch counts for the batches it holds, so the Hessian is still that of the mean of
    per-batch means."""
    model, _, _ = tiny
    batches = classification_batches(5, 3, sizes=(8, 8, 8, 5, 8))
    exact = exact_hessian(model, cross_entropy, batches)
    hvp = make_hvp(model, cross_entropy, batches, mode, concatenate=True)
    assert [len(batch[1]) for batch, _ in hvp.chunks] == [24, 5, 8]
    assert [merged for _, merged in hvp.chunks] == [3, 1, 1]
    block = torch.randn(hvp.dim, 4, dtype=torch.float64)
    torch.testing.assert_close(hvp(block), exact @ block, rtol=0, atol=1e-10)
    # Within a quarter of the memory a pass may add: 8 x (4 + 4 + 3) float64 values are 704 bytes a batch.
    monkeypatch.setattr(hvp_module, "PASS_BYTES", 4 * 2 * 704)
    joined = make_hvp(model, cross_entropy, batches, mode, concatenate=True)
    assert [merged for _, merged in joined.chunks] == [2, 1, 1, 1]
    torch.testing.assert_close(joined(block), exact @ block, rtol=0, atol=1e-10)
    assert [merged for _, merged in make_hvp(model, cross_entropy, batches, mode).chunks] == [1] * 5


def test_convolutions_on_the_cpu_get_one_vector_per_pass():
    """Batched (grouped) convolution kernels lose on the CPU: there a conv net's block runs vector by
    vector, sharing each batch's gradient graph."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Tanh(), nn.Flatten(), nn.Linear(2 * 4 * 4, 3)).double().eval()
    generator = torch.Generator().manual_seed(0)
    batches = [(torch.randn(4, 1, 6, 6, generator=generator, dtype=torch.float64),
                 torch.randint(0, 3, (4,), generator=generator))]
    hvp = make_hvp(model, cross_entropy, batches)
    assert hvp.block == 1
    block = torch.randn(hvp.dim, 3, dtype=torch.float64)
    torch.testing.assert_close(hvp(block), exact_hessian(model, cross_entropy, batches) @ block, rtol=0, atol=1e-10)


def test_float32_blocks_agree_with_one_by_one_products_and_the_exact_hessian(tiny):
    """The fast path runs in the model's dtype: a float32 block equals float32 single products to
    float32 rounding, and both the float64 exact products to about 1e-5."""
    model, batches, hessian = tiny
    single = make_hvp(copy.deepcopy(model).float(), cross_entropy, [(x.float(), y) for x, y in batches])
    block = torch.randn(single.dim, 16, generator=torch.Generator().manual_seed(2))
    together = single(block)
    one_by_one = torch.stack([single(block[:, j]) for j in range(16)], dim=1)
    torch.testing.assert_close(together, one_by_one, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(together.double(), hessian @ block.double(), rtol=1e-4, atol=1e-5)


def test_hutchinson_in_blocks_uses_the_same_probes_and_the_same_stopping_point():
    matrix = spectrum_matrix(torch.linspace(0.5, 3.0, 30), seed=4)
    operator = lambda v: matrix @ v  # noqa: E731
    # A fixed number of samples: the same probes, hence the same estimate, whatever the block size.
    fixed = [hutchinson_trace(operator, 30, max_samples=40, tol=0.0, seed=5, block=b) for b in (1, 7, 16, 40)]
    assert {estimate.hvps for estimate in fixed} == {40}
    for estimate in fixed[1:]:
        assert estimate.value == pytest.approx(fixed[0].value, rel=1e-12)
        assert estimate.std_error == pytest.approx(fixed[0].std_error, rel=1e-9)
    # With the stopping rule: it fires at the same sample; a block keeps the rest of its samples.
    # (192 probes split evenly into blocks of 4 or 16.)
    one = hutchinson_trace(operator, 30, max_samples=192, tol=2e-2, seed=5, block=1)
    assert 2 <= one.hvps < 192
    for block in (4, 16):
        blocked = hutchinson_trace(operator, 30, max_samples=192, tol=2e-2, seed=5, block=block)
        assert blocked.hvps == math.ceil(one.hvps / block) * block
        if blocked.hvps == one.hvps:
            assert blocked.value == pytest.approx(one.value, rel=1e-12)


class WithUnused(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.used = nn.Linear(4, 3)
        self.unused = nn.Linear(4, 3)  # never called in forward
        self.frozen = nn.Parameter(torch.ones(2), requires_grad=False)  # not a Hessian variable

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.used(x))


@pytest.mark.parametrize("mode", MODES)
def test_unused_parameters_have_zero_hessian_rows(mode):
    torch.manual_seed(0)
    model = WithUnused().double().eval()
    batches = classification_batches(4, 3)
    hvp = make_hvp(model, cross_entropy, batches, mode)
    assert hvp.dim == 2 * (4 * 3 + 3)
    block = torch.randn(hvp.dim, 2, dtype=torch.float64)
    products = hvp(block)  # (dim, 2)
    torch.testing.assert_close(products[15:], torch.zeros(15, 2, dtype=torch.float64), rtol=0, atol=0)
    torch.testing.assert_close(products, exact_hessian(model, cross_entropy, batches) @ block, rtol=0, atol=1e-10)


def test_batchnorm_in_eval_mode_forward_over_reverse_equals_double_backward():
    model = batchnorm_mlp()
    batches = classification_batches(5, 3, sizes=(8, 5))
    running_mean = model[1].running_mean.clone()
    block = torch.randn(sum(p.numel() for p in model.parameters()), 3, dtype=torch.float64)
    forward = make_hvp(model, cross_entropy, batches, "forward_over_reverse")(block)
    reverse = make_hvp(model, cross_entropy, batches, "reverse_over_reverse")(block)
    torch.testing.assert_close(forward, reverse, rtol=0, atol=1e-10)
    torch.testing.assert_close(forward, exact_hessian(model, cross_entropy, batches) @ block, rtol=0, atol=1e-10)
    assert torch.equal(model[1].running_mean, running_mean)


def test_a_model_in_train_mode_is_refused():
    model = nn.Sequential(nn.Linear(5, 3)).double().train()
    with pytest.raises(ValueError, match="eval mode"):
        make_hvp(model, cross_entropy, classification_batches(5, 3))


def transport_residual(model, points: torch.Tensor) -> torch.Tensor:
    """Mean squared u_t + 2 u_x at (x, t) points plus an anchoring term, the derivatives by
    torch.autograd.grad inside the loss as a physics-informed loss computes them."""
    points = points.detach().requires_grad_(True)
    u = model(points)  # (N, 1)
    grad = torch.autograd.grad(u.sum(), points, create_graph=True)[0]  # (N, 2): (u_x, u_t)
    return (grad[:, 1] + 2 * grad[:, 0]).pow(2).mean() + model(points[:4]).pow(2).mean()


def test_a_loss_that_differentiates_itself_needs_reverse_over_reverse():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 6), nn.Tanh(), nn.Linear(6, 1)).double().eval()
    generator = torch.Generator().manual_seed(0)
    batches = [torch.rand(16, 2, generator=generator, dtype=torch.float64) for _ in range(2)]
    hvp = make_hvp(model, transport_residual, batches, "reverse_over_reverse")
    block = torch.randn(hvp.dim, 2, dtype=torch.float64)
    torch.testing.assert_close(hvp(block), exact_hessian(model, transport_residual, batches) @ block,
                               rtol=0, atol=1e-10)
    # The block's batched second backward goes through the loss's own autograd.grad too.
    torch.testing.assert_close(hvp(block), torch.stack([hvp(block[:, 0]), hvp(block[:, 1])], dim=1), rtol=0, atol=1e-12)
    # Under torch.func.grad, requires_grad_() (and torch.autograd.grad on the transformed graph)
    # is unsupported: forward-over-reverse raises instead of returning a wrong product.
    with pytest.raises(RuntimeError, match="functorch"):
        make_hvp(model, transport_residual, batches, "forward_over_reverse")(block)


def test_hvp_counts_are_exact_and_metrics_are_numbers(tiny):
    model, batches, hessian = tiny
    hvp = make_hvp(model, cross_entropy, batches)
    _, eigen_hvps = top_eigenvalue(hvp, hvp.dim, seed=0)
    assert hvp.calls == eigen_hvps
    hutchinson = hutchinson_trace(hvp, hvp.dim, max_samples=25, tol=0.0)
    assert hutchinson.hvps == 25 and hvp.calls == eigen_hvps + 25
    hutchpp = hutchpp_trace(hvp, hvp.dim, hvps=31)  # sketch 10, trace on it 10, 11 residual probes
    assert hutchpp.hvps == 31 and hvp.calls == eigen_hvps + 25 + 31

    metrics = hessian_metrics(model, cross_entropy, batches, max_hvps=40, seed=0)
    assert list(metrics) == ["hessian_top_eigenvalue", "hessian_top_eigenvalue_hvps", "hessian_trace",
                             "hessian_trace_std_error", "hessian_trace_hvps"]
    assert all(isinstance(value, (int, float)) for value in metrics.values())
    assert metrics["hessian_top_eigenvalue"] == pytest.approx(torch.linalg.eigvalsh(hessian)[-1].item(), rel=1e-3)
    assert metrics["hessian_trace_hvps"] == 40
    assert abs(metrics["hessian_trace"] - hessian.trace().item()) < 3 * metrics["hessian_trace_std_error"]
