"""Mode connectivity on tiny MLPs trained on XOR: the mc definition and sign, a planted barrier
between a model and a permuted copy of itself, the Bezier curve that removes it, BatchNorm
recalibration and the curve's learning-rate schedule."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from zoobench.landscape import connectivity
from zoobench.landscape.connectivity import bezier_curve_mc, curve_lr, linear_path
from zoobench.landscape.weightspace import interpolate, recalibrate_batchnorm

HIDDEN = 16


def xor_data() -> tuple[torch.Tensor, torch.Tensor]:
    """200 points uniform in [-1, 1]^2, labelled by the sign of x0 * x1."""
    x = torch.rand(200, 2, generator=torch.Generator().manual_seed(0)) * 2 - 1  # (200, 2)
    return x, ((x[:, 0] > 0) ^ (x[:, 1] > 0)).long()  # (200,)


X, Y = xor_data()


def error(model: nn.Module) -> float:
    with torch.no_grad():
        return float((model(X).argmax(dim=1) != Y).float().mean())


def loss(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    inputs, labels = batch
    return F.cross_entropy(model(inputs), labels)


def batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch of 10 batches of 20, in the same shuffled order every call."""
    order = torch.randperm(200, generator=torch.Generator().manual_seed(1))
    return [(X[idx], Y[idx]) for idx in order.split(20)]


def trained_mlp(seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(2, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, 2))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(300):
        optimizer.zero_grad()
        F.cross_entropy(model(X), Y).backward()
        optimizer.step()
    return model


def permuted(model: nn.Sequential, perm: torch.Tensor) -> nn.Sequential:
    """The same function with the hidden units reordered."""
    copy = interpolate(model, model, 0.0)
    with torch.no_grad():
        copy[0].weight.copy_(model[0].weight[perm])
        copy[0].bias.copy_(model[0].bias[perm])
        copy[2].weight.copy_(model[2].weight[:, perm])
    return copy


@pytest.fixture(scope="module")
def model() -> nn.Sequential:
    trained = trained_mlp(0)
    assert error(trained) < 0.02
    return trained


@pytest.fixture(scope="module")
def twin(model) -> nn.Sequential:
    return permuted(model, torch.arange(HIDDEN).flip(0))


def bn_mlp(seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4, momentum=0.3), nn.ReLU(), nn.Linear(4, 2))


def weight(model: nn.Linear) -> float:
    return float(model.weight.detach())


def run_forward(model: nn.Module, batch: torch.Tensor) -> None:
    model(batch)


def test_mc_sign_convention_on_a_one_weight_model():
    """mc < 0 for a barrier, mc > 0 when the middle beats the ends, t* where |deviation| peaks."""
    a, b = nn.Linear(1, 1, bias=False), nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        a.weight.fill_(0.0)
        b.weight.fill_(1.0)
    barrier = linear_path(a, b, lambda m: weight(m) * (1 - weight(m)))
    assert barrier["linear_mc"] == -0.25 and barrier["linear_t_star"] == 0.5
    assert len(barrier["linear_errors"]) == 25
    assert barrier["linear_errors"][0] == 0.0 and barrier["linear_errors"][-1] == 0.0
    undertrained = linear_path(a, b, lambda m: (weight(m) - 0.5) ** 2, alphas=5)
    assert undertrained["linear_mc"] == 0.25 and undertrained["linear_t_star"] == 0.5
    with pytest.raises(ValueError, match="at least 3"):
        linear_path(a, b, lambda m: 0.0, alphas=2)


def test_a_model_is_connected_to_itself(model):
    linear = linear_path(model, model, error)
    assert linear["linear_mc"] == 0.0  # lerp(a, a, t) is a, bit for bit
    assert linear["linear_errors"] == [error(model)] * 25
    untrained = bezier_curve_mc(model, model, loss, batches, error, epochs=0)
    assert untrained["mc"] == 0.0 and untrained["mc_errors"] == [error(model)] * 11
    # Trained, the curve is a loop a -> a + 2t(1-t)(c - a) -> a. Exactly true: its ends stay at a.
    # Only approximately: the gradient on c is 2t(1-t) times the loss gradient at a point near a,
    # small for a trained a, so the loop stays close (it may find slightly lower error: mc >= 0).
    trained = bezier_curve_mc(model, model, loss, batches, error, epochs=5)
    assert trained["mc_errors"][0] == trained["mc_errors"][-1] == error(model)
    assert abs(trained["mc"]) <= 0.02  # at most 4 of the 200 points


def test_permuted_copy_computes_the_same_function_but_sits_behind_a_barrier(model, twin):
    torch.testing.assert_close(twin(X), model(X), rtol=0, atol=1e-6)
    assert any(not torch.equal(p, q) for p, q in zip(model.parameters(), twin.parameters()))
    linear = linear_path(model, twin, error)
    assert linear["linear_mc"] < -0.1
    assert 0.0 < linear["linear_t_star"] < 1.0


def test_untrained_bezier_curve_is_the_linear_path(model, twin):
    linear = linear_path(model, twin, error, alphas=25)
    curve = bezier_curve_mc(model, twin, loss, batches, error, epochs=0, t_values=25)
    assert curve["mc_errors"] == linear["linear_errors"]
    assert (curve["mc"], curve["mc_t_star"]) == (linear["linear_mc"], linear["linear_t_star"])
    assert curve["mc_curve_epochs"] == 0


def test_training_the_curve_lowers_the_barrier(model, twin):
    """A strict reduction held in all 36 runs tried (6 model seeds x 2 permutations x 3 curve
    seeds); halving it held in 25 of them, and with margin here (0.19 -> 0.04 to 0.065 over curve
    seeds 0-2), so the halving is a property of these seeds, the reduction of the method."""
    linear = linear_path(model, twin, error)
    curve = bezier_curve_mc(model, twin, loss, batches, error, epochs=5, t_values=25)
    assert abs(curve["mc"]) < abs(linear["linear_mc"])
    assert abs(curve["mc"]) < 0.5 * abs(linear["linear_mc"])
    assert curve["mc_errors"][0] == error(model) and curve["mc_errors"][-1] == error(twin)


def test_bezier_curve_is_deterministic_given_its_seed(model, twin):
    first = bezier_curve_mc(model, twin, loss, batches, error, epochs=2, seed=3)
    again = bezier_curve_mc(model, twin, loss, batches, error, epochs=2, seed=3)
    assert first == again


def test_bezier_curve_needs_five_t_values(model):
    with pytest.raises(ValueError, match="at least 5"):
        bezier_curve_mc(model, model, loss, batches, error, epochs=0, t_values=4)


def test_curve_lr_follows_garipovs_schedule_without_compounding():
    rates = [curve_lr(0.1, epoch, 10) for epoch in range(1, 11)]
    expected = [0.1] * 5 + [0.07525, 0.0505, 0.02575, 0.001, 0.001]
    assert rates == pytest.approx(expected, rel=1e-12)
    # Compounding (the paper's code) would give 0.1 * 0.7525 * 0.505 at epoch 7.
    assert curve_lr(0.1, 7, 10) == pytest.approx(0.1 * 0.505, rel=1e-12)


def test_curve_training_asks_the_schedule_with_the_base_lr_every_epoch(model, twin, monkeypatch):
    calls = []

    def recording(base_lr: float, epoch: int, epochs: int) -> float:
        calls.append((base_lr, epoch, epochs))
        return curve_lr(base_lr, epoch, epochs)

    monkeypatch.setattr(connectivity, "curve_lr", recording)
    bezier_curve_mc(model, twin, loss, batches, error, epochs=4, lr=0.05)
    assert calls == [(0.05, epoch, 4) for epoch in range(1, 5)]


def test_recalibration_estimates_the_batch_statistics_and_restores_the_model():
    model = bn_mlp(0)
    model(torch.randn(16, 3) * 5 + 3)  # stale running statistics
    model.eval()
    batch = torch.randn(32, 3, generator=torch.Generator().manual_seed(0)) * 2 + 1
    recalibrate_batchnorm(model, [batch], run_forward)
    norm_input = model[0](batch).detach()  # (32, 4)
    torch.testing.assert_close(model[1].running_mean, norm_input.mean(dim=0), rtol=0, atol=1e-6)
    torch.testing.assert_close(model[1].running_var, norm_input.var(dim=0), rtol=0, atol=1e-5)
    assert model[1].num_batches_tracked == 1
    assert model[1].momentum == 0.3
    assert not any(m.training for m in model.modules())


def test_recalibration_averages_batches_cumulatively_and_restores_mixed_modes():
    model = bn_mlp(0)
    model.train()
    model[3].eval()
    first, second = torch.randn(16, 3), torch.randn(16, 3) + 4
    recalibrate_batchnorm(model, [first, second], run_forward)
    means = [model[0](b).detach().mean(dim=0) for b in (first, second)]
    torch.testing.assert_close(model[1].running_mean, (means[0] + means[1]) / 2, rtol=0, atol=1e-5)
    assert [m.training for m in model] == [True, True, True, False]


def test_recalibration_without_batchnorm_runs_nothing():
    def untouchable():
        raise AssertionError("batches iterated")
        yield  # a generator that fails when iterated

    def no_forward(model, batch):
        raise AssertionError("forward called")

    recalibrate_batchnorm(nn.Sequential(nn.Linear(3, 2)), untouchable(), no_forward)


def test_recalibration_with_no_batches_fails_and_restores_momentum():
    model = bn_mlp(0).eval()
    with pytest.raises(ValueError, match="no batches"):
        recalibrate_batchnorm(model, [], run_forward)
    assert model[1].momentum == 0.3 and not model.training


def test_interpolate_ends_are_the_models_and_integer_buffers_come_from_a():
    a, b = bn_mlp(0), bn_mlp(1)
    for _ in range(3):
        a(torch.randn(8, 3))
    for _ in range(5):
        b(torch.randn(8, 3) + 1)
    start, end = interpolate(a, b, 0.0).state_dict(), interpolate(a, b, 1.0).state_dict()
    for name, tensor in a.state_dict().items():
        assert torch.equal(start[name], tensor), name
        if tensor.is_floating_point():
            assert torch.equal(end[name], b.state_dict()[name]), name
    assert end["1.num_batches_tracked"] == 3
    middle = interpolate(a, b, 0.25).state_dict()
    torch.testing.assert_close(middle["1.running_mean"], 0.75 * a[1].running_mean + 0.25 * b[1].running_mean)
    assert interpolate(a, b, 0.5) is not a
    with pytest.raises(ValueError, match="shape"):
        interpolate(a, nn.Sequential(nn.Linear(3, 5), nn.BatchNorm1d(5), nn.ReLU(), nn.Linear(5, 2)), 0.5)
    with pytest.raises(ValueError, match="names"):
        bezier_curve_mc(a, nn.Sequential(nn.Linear(3, 2)), loss, batches, error, epochs=0)


def test_batchnorm_models_are_recalibrated_at_interior_points_only_and_left_untouched():
    a, b = bn_mlp(0), bn_mlp(1)
    inputs = torch.randn(64, 3, generator=torch.Generator().manual_seed(2))  # (64, 3)
    labels = (inputs.sum(dim=1) > 0).long()
    data = [(inputs[i : i + 16], labels[i : i + 16]) for i in range(0, 64, 16)]
    for m in (a, b):
        m(inputs)
    before = [{k: v.clone() for k, v in m.state_dict().items()} for m in (a, b)]
    recalibrated = []

    def recalibrate(point: nn.Module) -> None:
        recalibrated.append(point)
        recalibrate_batchnorm(point, data, lambda m, batch: m(batch[0]))

    def bn_error(point: nn.Module) -> float:
        assert not point.training
        with torch.no_grad():
            return float((point(inputs).argmax(dim=1) != labels).float().mean())

    linear_path(a, b, bn_error, recalibrate, alphas=7)
    assert len(recalibrated) == 5 and all(p is not a and p is not b for p in recalibrated)
    recalibrated.clear()
    result = bezier_curve_mc(a, b, loss, lambda: data, bn_error, recalibrate, epochs=2, t_values=6)
    assert len(recalibrated) == 4 and len(result["mc_errors"]) == 6
    for m, state in zip((a, b), before):
        for name, tensor in m.state_dict().items():
            assert torch.equal(tensor, state[name]), name
