"""Linear CKA between representations of the same examples, e.g. the logits of a cell's seeds.

CKA compares two representations through their n x n Gram matrices, so it ignores rotations and
isotropic scaling of either side (what differs between two seeds that learned the same thing) but
not general linear maps. The biased HSIC estimator of Kornblith et al. (2019) is inflated for small
n (about 0.13 on two independent 10-dimensional Gaussians at n = 64), which makes seeds that share
nothing look similar; the unbiased HSIC estimator (Song et al. 2012), used for CKA by Nguyen, Raghu
and Kornblith (2021), removes that bias and is the default.
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import Tensor


def linear_cka(x: Tensor, y: Tensor, unbiased: bool = True) -> float:
    """CKA = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)) with K = X X^T, L = Y Y^T, in float64.

    Rows are examples; inputs of more than two dimensions (e.g. (n, T, V) logits) are flattened per
    example. NaN where CKA is undefined: a representation that does not vary across the examples
    (a collapsed or diverged seed is a finding to record, not a crash), or an unbiased self-HSIC
    estimate that is not positive.
    """
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"CKA compares representations of the same examples; got {x.shape[0]} and {y.shape[0]} rows")
    return _cka(_gram(x, unbiased), _gram(y, unbiased), unbiased)


def mean_pairwise_cka(representations: list[Tensor], unbiased: bool = True) -> tuple[float, list[float]]:
    """The mean CKA over all unordered pairs (a phase zoo's per-cell value) and the per-pair values.

    Pairs come in ``itertools.combinations`` order: (0, 1), (0, 2), ..., (1, 2), ... Each Gram
    matrix is computed once, which is the expensive part for wide representations.
    """
    if len(representations) < 2:
        raise ValueError(f"mean pairwise CKA needs at least 2 representations, got {len(representations)}")
    rows = {r.shape[0] for r in representations}
    if len(rows) != 1:
        raise ValueError(f"CKA compares representations of the same examples; got row counts {sorted(rows)}")
    grams = [_gram(r, unbiased) for r in representations]
    pairs = [_cka(k, l, unbiased) for k, l in itertools.combinations(grams, 2)]
    return sum(pairs) / len(pairs), pairs


def _gram(x: Tensor, unbiased: bool) -> Tensor:
    """The (n, n) linear Gram matrix of the mean-centered, flattened examples.

    Centering the features changes neither estimator (both are invariant to translating a
    representation) but keeps large shared offsets, common in logits, from cancelling in float64.
    """
    n = x.shape[0]
    minimum = 4 if unbiased else 2
    if n < minimum:
        estimator = "unbiased HSIC (it divides by n (n - 3))" if unbiased else "biased HSIC"
        raise ValueError(f"CKA with the {estimator} needs at least {minimum} examples, got {n}")
    features = x.detach().reshape(n, -1).to(torch.float64)  # (n, p)
    features = features - features.mean(dim=0)
    return features @ features.T  # (n, n)


def _cka(k: Tensor, l: Tensor, unbiased: bool) -> float:
    norm = _hsic(k, k, unbiased) * _hsic(l, l, unbiased)
    if not norm > 0:  # also catches NaN
        return math.nan
    return _hsic(k, l, unbiased) / math.sqrt(norm)


def _hsic(k: Tensor, l: Tensor, unbiased: bool) -> float:
    """HSIC of two Gram matrices of feature-centered representations (so K = HKH already).

    Unbiased (Song et al. 2012, eq. 5), with K~, L~ the Gram matrices with zeroed diagonals:
    [tr(K~ L~) + 1^T K~ 1 1^T L~ 1 / ((n-1)(n-2)) - 2/(n-2) 1^T K~ L~ 1] / (n (n-3)).
    """
    n = k.shape[0]
    if not unbiased:
        return float((k * l).sum()) / (n - 1) ** 2  # tr(K L) for symmetric K, L
    k = k.clone().fill_diagonal_(0.0)
    l = l.clone().fill_diagonal_(0.0)
    trace = (k * l).sum()  # tr(K~ L~)
    sums = k.sum() * l.sum() / ((n - 1) * (n - 2))
    cross = 2.0 * (k.sum(dim=0) @ l.sum(dim=0)) / (n - 2)  # 1^T K~ L~ 1 = (K~ 1) . (L~ 1)
    return float(trace + sums - cross) / (n * (n - 3))
