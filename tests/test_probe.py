"""probe: weight statistics, grouped splits, validation-chosen ridge, and a run on the tiny zoo."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from zoobench.bench.cells import open_cells
from zoobench.errors import UsageError, ZoobenchError
from zoobench.method import Context, Zoo, contract_problems, make_config
from zoobench.methods.probe import Probe, fit_and_score, layer_statistics, split_cells


def synthetic_zoo(cells: int = 20, seeds: int = 3, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """Features of random two-layer 'models' whose weight scales vary by cell and seed."""
    rng = np.random.default_rng(seed)
    rows, groups = [], []
    for cell in range(cells):
        scale = rng.uniform(0.5, 2.0)
        for _ in range(seeds):
            generator = torch.Generator().manual_seed(int(rng.integers(2**31)))
            state = {"0.weight": torch.randn(16, 8, generator=generator) * scale * rng.uniform(0.8, 1.2),
                     "0.bias": torch.rand(16, generator=generator) + rng.normal(),
                     "2.weight": torch.randn(4, 16, generator=generator) * rng.uniform(0.5, 1.5)}
            rows.append(layer_statistics(state))
            groups.append(f"cell{cell}")
    return np.stack(rows), groups


def test_statistics_are_mean_variance_and_quantiles_of_each_parameter_tensor():
    values = torch.arange(101, dtype=torch.float32)
    state = {"fc.weight": values.reshape(1, 101), "bn.weight": torch.ones(4), "bn.running_mean": torch.zeros(4),
             "bn.running_var": torch.ones(4), "bn.num_batches_tracked": torch.tensor(7)}
    features = layer_statistics(state)
    assert features.tolist() == pytest.approx([50, values.double().var(unbiased=False).item(), 1, 25, 50, 75, 99,
                                               1, 0, 1, 1, 1, 1, 1])


def test_cells_are_split_whole_into_three_parts_that_change_with_the_split():
    groups = [f"cell{c}" for c in range(10) for _ in range(3)]
    config = Probe.Config(val_fraction=0.2, test_fraction=0.3)
    partitions = set()
    for split in range(4):
        train, val, test = split_cells(groups, split, config)
        assert (train.astype(int) + val + test == 1).all()
        assert (test.sum(), val.sum(), train.sum()) == (9, 6, 15)
        for cell in set(groups):
            members = [i for i, g in enumerate(groups) if g == cell]
            assert len({(train[i], val[i], test[i]) for i in members}) == 1, "a cell's seeds straddle two parts"
        partitions.add(tuple(test))
        assert np.array_equal(split_cells(groups, split, config)[2], test)  # reproducible
    assert len(partitions) > 1
    with pytest.raises(ZoobenchError, match="too few"):
        split_cells(["a", "a", "b"], 0, config)


def test_an_exact_linear_function_of_the_statistics_is_recovered_on_held_out_cells():
    features, groups = synthetic_zoo()
    rng = np.random.default_rng(1)
    exact = features @ rng.normal(size=features.shape[1]) + 3.0
    noise = rng.normal(size=len(groups))
    result = fit_and_score(features, {"exact": exact, "noise": noise}, groups, 0, Probe.Config())
    assert result["r2_exact"] > 0.99
    assert result["r2_noise"] < 0.5
    assert result["alpha_exact"] < result["alpha_noise"]  # the penalty follows the validation data
    assert result["r2_mean"] == pytest.approx((result["r2_exact"] + result["r2_noise"]) / 2)
    assert (result["models_train"], result["models_val"], result["models_test"]) == (36, 12, 12)
    assert result["features"] == 21


def test_regularisation_is_chosen_without_looking_at_the_test_cells():
    features, groups = synthetic_zoo()
    rng = np.random.default_rng(2)
    y = features @ rng.normal(size=features.shape[1]) + rng.normal(scale=2.0, size=len(groups))
    config = Probe.Config()
    for split in range(3):
        test = split_cells(groups, split, config)[2]
        scrambled = y.copy()
        scrambled[test] = rng.permutation(y[test]) * 5 + 1
        honest = fit_and_score(features, {"y": y}, groups, split, config)
        cheated = fit_and_score(features, {"y": scrambled}, groups, split, config)
        assert honest["alpha_y"] == cheated["alpha_y"]
        assert honest["r2_y"] != cheated["r2_y"]


def test_a_target_with_too_few_values_scores_nan_without_failing_the_others():
    features, groups = synthetic_zoo(cells=10)
    rng = np.random.default_rng(3)
    sparse = np.full(len(groups), np.nan)
    sparse[:2] = 1.0
    constant = np.ones(len(groups))
    result = fit_and_score(features, {"sparse": sparse, "constant": constant, "y": features[:, 0] * 2 + rng.normal(
        scale=1e-3, size=len(groups))}, groups, 0, Probe.Config())
    assert math.isnan(result["r2_sparse"]) and math.isnan(result["r2_constant"])
    assert result["r2_y"] > 0.9 and result["r2_mean"] == result["r2_y"]


def test_probe_runs_on_every_split_of_the_tiny_zoo(tiny_zoo):
    assert contract_problems(Probe) == []
    probe = Probe()
    config = make_config(Probe, {"splits": "2"})
    assert probe.units(config) == ["split0", "split1"]
    cells = list(open_cells(tiny_zoo).values())
    ctx = Context(config=config, spec=tiny_zoo.spec)
    result = probe.run(Zoo("split1", tiny_zoo.spec, cells), ctx)
    for target in ("test_acc", "gap", "cka", "log_hessian_trace", "mc"):
        assert f"r2_{target}" in result and f"alpha_{target}" in result
    assert all(isinstance(v, float) for v in result.values())
    assert (result["models_train"], result["models_val"], result["models_test"]) == (6, 3, 3)
    assert result["features"] == 2 * 2 * 7  # one hidden layer: two weights and two biases
    assert math.isfinite(result["r2_test_acc"]) and math.isfinite(result["r2_mean"])
    assert math.isnan(result["r2_cka"])  # one test cell: a cell-level target is constant there
    with pytest.raises(ZoobenchError, match="unknown split 'split7'"):
        probe.run(Zoo("split7", tiny_zoo.spec, cells), ctx)
    with pytest.raises(UsageError, match="method probe: alphas must be positive"):
        make_config(Probe, {"alphas": "[]"})
