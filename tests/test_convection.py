"""The 1D-convection PINN problem: the exact solution satisfies it, a wrong one does not."""

import math

import pytest
import torch
from torch import nn

from zoobench.data import DATASETS
from zoobench.data.convection import load


class Exact(nn.Module):
    """u(x, t) = sin(x - c t): the solution when c = beta."""

    def __init__(self, speed: float) -> None:
        super().__init__()
        self.speed = speed

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        return torch.sin(points[:, :1] - self.speed * points[:, 1:])


@pytest.fixture
def problem():
    options = {**DATASETS.get("convection").options, "beta": 30.0, "collocation_points": 100}
    return load(DATASETS.get("convection"), options, None)


def test_exact_solution_has_zero_residual_initial_and_boundary_error(problem):
    loss, parts = problem.loss(Exact(30.0), (problem.interior,))
    assert parts["residual"].item() < 1e-9
    assert parts["initial"].item() < 1e-12 and parts["boundary"].item() < 1e-12
    assert problem.evaluate(Exact(30.0))["rel_l2"] < 1e-6


def test_a_wrong_speed_is_penalised_by_the_residual(problem):
    _, parts = problem.loss(Exact(-30.0), (problem.interior,))
    assert parts["residual"].item() == pytest.approx((2 * 30.0) ** 2 * 0.5, rel=0.3)  # mean of (2 beta cos)^2
    assert problem.evaluate(Exact(-30.0))["rel_l2"] > 0.5


def test_collocation_points_are_fixed_and_inside_the_domain(problem):
    again = load(DATASETS.get("convection"), {**DATASETS.get("convection").options, "beta": 1.0}, None)
    assert problem.interior.shape == (100, 2) and torch.equal(problem.interior, again.interior)
    assert problem.interior[:, 0].min() >= 0 and problem.interior[:, 0].max() < 2 * math.pi
    assert problem.interior[:, 1].min() >= 0 and problem.interior[:, 1].max() <= 1
    assert problem.test_points.shape == (256 * 100, 2)


def test_train_split_evaluates_the_pinn_loss(problem):
    model = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1))
    train = problem.evaluate(model, "train")
    loss, parts = problem.loss(model, (problem.interior,))
    assert train["loss"] == pytest.approx(loss.item()) and train["residual"] == pytest.approx(parts["residual"].item())


def test_fixed_test_batches_are_a_seeded_subset_of_the_grid(problem):
    (first,), = problem.fixed_batches("test", 1, 512, seed=3)
    (again,), = problem.fixed_batches("test", 1, 512, seed=3)
    assert first.shape == (512, 2) and torch.equal(first, again)
    assert problem.fixed_batches("train", 10, 64)[0][0] is problem.interior
