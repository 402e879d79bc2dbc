"""The 1D convection problem of the PINN zoo (Krishnapriyan et al. 2021), generated, no download.

    u_t + beta u_x = 0,  x in [0, 2pi),  t in [0, 1],  u(x, 0) = sin x,  u(0, t) = u(2pi, t)

The exact solution sin(x - beta t) gives the test error. The collocation points are drawn once
with a fixed seed, so every model of the zoo solves the same discretised problem and only its
initialisation (the model's seed) and the grid's load (beta) and temperature (lr) differ.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.nn.functional as F

from zoobench.data.catalog import DatasetInfo

TWO_PI = 2 * math.pi


@dataclass
class ConvectionProblem:
    beta: float
    interior: torch.Tensor  # (N, 2) collocation points (x, t) where the residual is penalised
    initial: torch.Tensor  # (M, 2) points (x, 0)
    boundary_t: torch.Tensor  # (K, 1) times at which u(0, t) must equal u(2pi, t)
    test_points: torch.Tensor  # (X*T, 2) dense grid
    exact: torch.Tensor  # (X*T,) sin(x - beta t) on the grid

    def to(self, device: torch.device | str) -> ConvectionProblem:
        return ConvectionProblem(self.beta, *(t.to(device) for t in (self.interior, self.initial, self.boundary_t,
                                                                     self.test_points, self.exact)))

    def steps_per_epoch(self, batch_size: int) -> int:
        return 1  # full batch: L-BFGS sees every collocation point at every step

    def batches(self, batch_size: int, generator: torch.Generator, augment: None) -> Iterator[tuple[torch.Tensor]]:
        yield (self.interior,)

    def fixed_batches(self, split: str, count: int, size: int, seed: int = 0) -> list[tuple[torch.Tensor]]:
        """"train": the collocation points, one batch; "test": `count` batches of `size` grid points drawn
        with `seed` (the whole grid is 25,600 points: too many for an n x n CKA Gram matrix)."""
        if split == "train":
            return [(self.interior,)]
        order = torch.randperm(len(self.test_points), generator=torch.Generator().manual_seed(seed))
        return [(self.test_points[index.to(self.test_points.device)],) for index in order[:count * size].split(size)]

    def residual(self, model: torch.nn.Module, points: torch.Tensor) -> torch.Tensor:
        """u_t + beta u_x at the points, by automatic differentiation (kept in the graph for training)."""
        points = points.detach().requires_grad_(True)
        u = model(points)
        grad = torch.autograd.grad(u.sum(), points, create_graph=True)[0]  # (N, 2): (u_x, u_t)
        return grad[:, 1] + self.beta * grad[:, 0]

    def loss(self, model: torch.nn.Module, batch: tuple[torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Residual + initial-condition + periodic-boundary mean squared errors (equal weights)."""
        (interior,) = batch
        residual = self.residual(model, interior).pow(2).mean()
        initial = F.mse_loss(model(self.initial).squeeze(-1), torch.sin(self.initial[:, 0]))
        left = model(torch.cat([torch.zeros_like(self.boundary_t), self.boundary_t], dim=1))
        right = model(torch.cat([torch.full_like(self.boundary_t, TWO_PI), self.boundary_t], dim=1))
        boundary = F.mse_loss(left, right)
        return residual + initial + boundary, {"residual": residual, "initial": initial, "boundary": boundary}

    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module, split: str = "test") -> dict[str, float]:
        """"test": error against the exact solution on the dense grid ("rel_l2" is the paper's test
        error); "train": the PINN loss and its parts on the collocation points."""
        if split == "train":
            with torch.enable_grad():
                loss, parts = self.loss(model, (self.interior,))
            return {"loss": loss.item(), **{name: value.item() for name, value in parts.items()}}
        prediction = model(self.test_points).squeeze(-1)
        error = prediction - self.exact
        return {"loss": error.pow(2).mean().item(), "rel_l2": (error.norm() / self.exact.norm()).item()}

    def chance(self, split: str = "test") -> None:
        """None: the PDE has no accuracy (its trivial prediction, u = 0, has rel_l2 exactly 1)."""
        return None


def load(info: DatasetInfo, options: dict[str, Any], data_root: Path | None) -> ConvectionProblem:
    generator = torch.Generator().manual_seed(0)
    n = options["collocation_points"]
    interior = torch.stack([torch.rand(n, generator=generator) * TWO_PI, torch.rand(n, generator=generator)], dim=1)
    x = torch.arange(options["test_x"]) * (TWO_PI / options["test_x"])  # [0, 2pi): periodic end is the boundary's job
    t = torch.linspace(0, 1, options["test_t"])
    initial = torch.stack([x, torch.zeros_like(x)], dim=1)
    xx, tt = torch.meshgrid(x, t, indexing="ij")
    test_points = torch.stack([xx.flatten(), tt.flatten()], dim=1)
    beta = options["beta"]
    return ConvectionProblem(beta, interior, initial, t[:, None], test_points, torch.sin(test_points[:, 0] - beta * test_points[:, 1]))
