"""Linear CKA: the invariances that define it, the small-n bias of the biased estimator, and
agreement with brute-force HSIC estimators written out from their definitions."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from zoobench.landscape.cka import linear_cka, mean_pairwise_cka


def gaussian(n: int, p: int, seed: int) -> torch.Tensor:
    return torch.randn(n, p, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def related_pair(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two representations of 40 examples that share some structure, so CKA is well inside (0, 1)."""
    x = gaussian(40, 6, seed)
    y = torch.cat([x[:, :3] @ gaussian(3, 5, seed + 1), gaussian(40, 3, seed + 2)], dim=1)
    return x, y


def random_orthogonal(p: int, seed: int) -> torch.Tensor:
    q, _ = torch.linalg.qr(gaussian(p, p, seed))
    return q


@pytest.mark.parametrize("unbiased", [True, False])
def test_cka_of_a_representation_with_itself_is_one(unbiased):
    x = gaussian(30, 7, 0)
    assert linear_cka(x, x, unbiased) == pytest.approx(1.0, abs=1e-10)


@pytest.mark.parametrize("unbiased", [True, False])
def test_cka_is_invariant_to_orthogonal_maps_and_isotropic_scaling(unbiased):
    x, y = related_pair()
    reference = linear_cka(x, y, unbiased)
    assert 0.1 < reference < 0.9
    assert linear_cka(x @ random_orthogonal(6, 10), y, unbiased) == pytest.approx(reference, abs=1e-10)
    assert linear_cka(x, y @ random_orthogonal(8, 11), unbiased) == pytest.approx(reference, abs=1e-10)
    assert linear_cka(37.5 * x, y, unbiased) == pytest.approx(reference, abs=1e-10)
    assert linear_cka(x, 1e-3 * y, unbiased) == pytest.approx(reference, abs=1e-10)


@pytest.mark.parametrize("unbiased", [True, False])
def test_cka_is_not_invariant_to_a_general_invertible_map(unbiased):
    x, y = related_pair()
    stretch = torch.diag(torch.tensor([1.0, 20.0, 1.0, 0.05, 1.0, 3.0], dtype=torch.float64))
    invertible = stretch @ random_orthogonal(6, 12)
    assert torch.linalg.matrix_rank(invertible) == 6
    assert abs(linear_cka(x @ invertible, y, unbiased) - linear_cka(x, y, unbiased)) > 0.05
    assert linear_cka(x, x @ invertible, unbiased) < 0.9  # the same information, but not "the same" to CKA


@pytest.mark.parametrize("unbiased", [True, False])
def test_cka_is_symmetric_and_ignores_translation(unbiased):
    x, y = related_pair()
    assert linear_cka(x, y, unbiased) == pytest.approx(linear_cka(y, x, unbiased), abs=1e-12)
    assert linear_cka(x + 1e3, y - 7.0, unbiased) == pytest.approx(linear_cka(x, y, unbiased), abs=1e-9)


def test_unbiased_cka_of_independent_representations_is_near_zero_where_the_biased_one_is_inflated():
    draws = [(gaussian(64, 10, 2 * i), gaussian(64, 10, 2 * i + 1)) for i in range(20)]
    unbiased = sum(linear_cka(x, y, unbiased=True) for x, y in draws) / len(draws)
    biased = sum(linear_cka(x, y, unbiased=False) for x, y in draws) / len(draws)
    assert abs(unbiased) < 0.05
    assert biased > 0.1


def brute_force_hsic_unbiased(k: torch.Tensor, l: torch.Tensor) -> float:
    """The U-statistic over ordered 4-tuples of distinct examples (Song et al. 2012, Theorem 2):
    an unbiased estimate of E[k l] + E[k] E[l] - 2 E_{x}[E_{x'}[k] E_{x''}[l]], written out."""
    n = k.shape[0]
    total = 0.0
    for i, j, q, r in itertools.permutations(range(n), 4):
        total += k[i, j] * l[i, j] + k[i, j] * l[q, r] - 2 * k[i, j] * l[i, q]
    return float(total) / math.perm(n, 4)


def brute_force_hsic_biased(k: torch.Tensor, l: torch.Tensor) -> float:
    n = k.shape[0]
    h = torch.eye(n, dtype=torch.float64) - torch.full((n, n), 1.0 / n, dtype=torch.float64)
    return float(torch.trace(k @ h @ l @ h)) / (n - 1) ** 2


@pytest.mark.parametrize(
    ("unbiased", "hsic"), [(True, brute_force_hsic_unbiased), (False, brute_force_hsic_biased)]
)
def test_cka_agrees_with_a_brute_force_hsic_on_raw_gram_matrices(unbiased, hsic):
    x = gaussian(7, 3, 20) + 2.0  # uncentered: the brute force sees the raw Gram matrices
    y = x[:, :2] ** 2 + gaussian(7, 2, 21)
    k, l = x @ x.T, y @ y.T
    expected = hsic(k, l) / math.sqrt(hsic(k, k) * hsic(l, l))
    assert linear_cka(x, y, unbiased) == pytest.approx(expected, abs=1e-10)


def test_higher_dimensional_representations_are_flattened_per_example():
    logits = gaussian(12, 3 * 5, 30).reshape(12, 3, 5).float()  # (n, T, V)
    other = gaussian(12, 4, 31)
    assert linear_cka(logits, other) == pytest.approx(linear_cka(logits.reshape(12, 15), other), abs=1e-12)


def test_unbiased_cka_needs_four_examples():
    with pytest.raises(ValueError, match="at least 4 examples"):
        linear_cka(gaussian(3, 2, 0), gaussian(3, 2, 1))
    assert math.isfinite(linear_cka(gaussian(3, 2, 0), gaussian(3, 2, 1), unbiased=False))


def test_cka_of_a_constant_representation_is_nan():
    assert math.isnan(linear_cka(torch.ones(10, 3), gaussian(10, 3, 0)))


def test_mean_pairwise_cka_over_three_seeds_has_three_pairs_in_combinations_order():
    x, y = related_pair()
    z = gaussian(40, 4, 40)
    mean, pairs = mean_pairwise_cka([x, y, z])
    assert pairs == pytest.approx([linear_cka(x, y), linear_cka(x, z), linear_cka(y, z)], abs=1e-12)
    assert mean == pytest.approx(sum(pairs) / 3, abs=1e-12)
    with pytest.raises(ValueError, match="same examples"):
        mean_pairwise_cka([x, y[:30]])
