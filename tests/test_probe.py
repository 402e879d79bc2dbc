"""probe: weight statistics, cell-grouped random and cross splits, validation-chosen ridge, the trees baseline,
rank scores, the phase as a class, a run on the tiny zoo, and zoo-scope summaries grouped by kind of unit."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import kendalltau, spearmanr

from zoobench.bench.cells import open_cells
from zoobench.errors import UsageError, ZoobenchError
from zoobench.method import Context, Zoo, contract_problems, make_config, random_split
from zoobench.methods.probe import Probe, ZooTable, layer_statistics, unit_split
from zoobench.methods.probe_scores import rank_scores, score_split
from zoobench.reports import tables
from zoobench.reports.boards import Board, overview, overview_grid

PHASES = ("I", "II", "III", "IV-A", "IV-B")
ALPHAS, CS, LEAVES = Probe.Config().alphas, Probe.Config().cs, Probe.Config().leaves


def synthetic_zoo(cells: int = 20, seeds: int = 3, seed: int = 0) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Features of random two-layer 'models' whose weight scales vary by cell and seed, their cells, and
    each cell's scale (per model)."""
    rng = np.random.default_rng(seed)
    rows, groups, scales = [], [], []
    for cell in range(cells):
        scale = rng.uniform(0.5, 2.0)
        for _ in range(seeds):
            generator = torch.Generator().manual_seed(int(rng.integers(2**31)))
            state = {"0.weight": torch.randn(16, 8, generator=generator) * scale * rng.uniform(0.8, 1.2),
                     "0.bias": torch.rand(16, generator=generator) + rng.normal(),
                     "2.weight": torch.randn(4, 16, generator=generator) * rng.uniform(0.5, 1.5)}
            rows.append(layer_statistics(state))
            groups.append(f"cell{cell}")
            scales.append(scale)
    return np.stack(rows), groups, np.asarray(scales)


def table_of(cells: list[str], loads: list[float], phases: list[str | None]) -> ZooTable:
    """A ZooTable of three seeds per cell (only what the splits read)."""
    rows = [(c, l, p) for c, l, p in zip(cells, loads, phases) for _ in range(3)]
    return ZooTable(np.zeros((len(rows), 1)), {}, [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows])


def split(groups: list[str], index: int = 0, config: Probe.Config = Probe.Config()):
    fractions = (1 - config.val_fraction - config.test_fraction, config.val_fraction, config.test_fraction)
    return random_split(groups, [config.seed, index], fractions)


def score(features, targets, groups, part, phases=None):
    phases = phases if phases is not None else [None] * len(groups)
    return score_split(features, targets, phases, groups, part, ALPHAS, CS, LEAVES)


def test_statistics_are_mean_variance_and_quantiles_of_each_parameter_tensor():
    values = torch.arange(101, dtype=torch.float32)
    state = {"fc.weight": values.reshape(1, 101), "bn.weight": torch.ones(4), "bn.running_mean": torch.zeros(4),
             "bn.running_var": torch.ones(4), "bn.num_batches_tracked": torch.tensor(7)}
    features = layer_statistics(state)
    assert features.tolist() == pytest.approx([50, values.double().var(unbiased=False).item(), 1, 25, 50, 75, 99,
                                               1, 0, 1, 1, 1, 1, 1])


def brute_tau_b(x: np.ndarray, y: np.ndarray) -> float:
    """Kendall's tau-b from its definition: (concordant - discordant) / sqrt of the pairs untied in each."""
    pairs = [(np.sign(x[i] - x[j]), np.sign(y[i] - y[j])) for i in range(len(x)) for j in range(i)]
    agreement = sum(a * b for a, b in pairs)
    return agreement / math.sqrt(sum(a != 0 for a, _ in pairs) * sum(b != 0 for _, b in pairs))


def test_rank_scores_are_kendall_tau_b_and_spearman_rho():
    y = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    predicted = np.array([0.3, 0.1, 0.4, 0.4, 0.9, 0.2])  # a tie and several swaps
    tau, rho = rank_scores(y, predicted)
    assert tau == pytest.approx(brute_tau_b(y, predicted)) and tau == pytest.approx(kendalltau(y, predicted).statistic)
    ranks = np.array([3, 1, 4.5, 4.5, 6, 2])  # of `predicted`, ties sharing their mean rank
    assert rho == pytest.approx(np.corrcoef(y, ranks)[0, 1]) and rho == pytest.approx(spearmanr(y, predicted).statistic)
    assert rank_scores(y, np.exp(y)) == (pytest.approx(1.0), pytest.approx(1.0))  # monotone, not linear
    assert rank_scores(y, -y) == (pytest.approx(-1.0), pytest.approx(-1.0))
    assert all(math.isnan(v) for v in rank_scores(y, np.ones(6)) + rank_scores(np.ones(6), y))


def test_random_units_split_cells_whole_and_change_with_the_index():
    cells = [f"cell{c}" for c in range(10)]
    table = table_of(cells, [1.0] * 10, ["II"] * 10)
    config = Probe.Config(val_fraction=0.2, test_fraction=0.3)
    partitions = set()
    for index in range(4):
        part = unit_split(f"random{index}", table, config)
        assert sorted(np.concatenate([part.train, part.val, part.test]).tolist()) == list(range(30))
        assert (len(part.test), len(part.val), len(part.train)) == (9, 6, 15)
        sides = [{table.cells[i] for i in side} for side in (part.train, part.val, part.test)]
        assert not (sides[0] & sides[1] or sides[0] & sides[2] or sides[1] & sides[2]), "a cell straddles two parts"
        partitions.add(tuple(part.test))
        assert np.array_equal(unit_split(f"random{index}", table, config).test, part.test)  # reproducible
    assert len(partitions) > 1
    with pytest.raises(ZoobenchError, match="too few"):
        unit_split("random0", table_of(["a", "b"], [1.0, 1.0], ["II", "II"]), config)


def test_cross_phase_tests_on_exactly_the_phase_iv_cells_and_cross_load_on_the_largest_loads():
    cells = [f"w{w}-bs{b}" for w in (4, 8, 16, 32) for b in (8, 64, 512)]
    loads = [float(c.split("-")[0][1:]) for c in cells]
    phases = ["I", "II", "III", "II", "III", "IV-A", "III", "IV-B", "IV-A", None, "IV-B", "IV-B"]
    table = table_of(cells, loads, phases)
    part = unit_split("cross_phase", table, Probe.Config())
    test = {table.cells[i] for i in part.test}
    assert sorted(part.test.tolist()) == [i for i, p in enumerate(table.phases) if p in ("IV-A", "IV-B")]
    assert test == {c for c, p in zip(cells, phases) if p in ("IV-A", "IV-B")}
    fit = {table.cells[i] for i in np.concatenate([part.train, part.val])}
    assert not fit & test and {table.phases[cells.index(c) * 3] for c in fit} <= {"I", "II", "III"}
    assert len(part.val) > 0  # a validation part from the training side
    part = unit_split("cross_load", table, Probe.Config())
    assert {table.loads[i] for i in part.test} == {16.0, 32.0} and len(part.test) == 18
    assert {table.loads[i] for i in np.concatenate([part.train, part.val])} == {4.0, 8.0}
    no_phase_iv = table_of(cells[:3], loads[:3], phases[:3])
    with pytest.raises(ZoobenchError, match="no cross_phase split on this zoo: .*Phase IV.*phases: I, II, III"):
        unit_split("cross_phase", no_phase_iv, Probe.Config())
    with pytest.raises(ZoobenchError, match="no cross_load split on this zoo: it needs two load values"):
        unit_split("cross_load", no_phase_iv, Probe.Config())


def test_an_exact_linear_function_of_the_statistics_is_recovered_on_held_out_cells():
    features, groups, _ = synthetic_zoo()
    rng = np.random.default_rng(1)
    exact = features @ rng.normal(size=features.shape[1]) + 3.0
    noise = rng.normal(size=len(groups))
    phases = ["II" if i < 21 else "III" if i < 42 else "I" for i in range(len(groups))]
    result = score(features, {"exact": exact, "noise": noise}, groups, split(groups), phases)
    assert result["r2_exact"] > 0.99 and result["tau_exact"] > 0.95 and result["rho_exact"] > 0.95
    assert result["r2_noise"] < 0.5
    assert result["alpha_exact"] < result["alpha_noise"]  # the penalty follows the validation data
    assert result["r2_mean"] == pytest.approx((result["r2_exact"] + result["r2_noise"]) / 2)
    assert result["tau_mean"] == pytest.approx((result["tau_exact"] + result["tau_noise"]) / 2)
    assert (result["models_train"], result["models_val"], result["models_test"]) == (36, 12, 12)
    assert result["features"] == 21
    test = split(groups).test
    counts = {p: sum(phases[i] == p for i in test) for p in PHASES}
    for phase in PHASES:  # per phase of the test models: tau where three or more, else NaN
        value = result[f"tau_exact_{phase}"]
        assert value > 0.9 if counts[phase] >= 3 else math.isnan(value), (phase, counts[phase], value)
    assert sum(counts[p] >= 3 for p in PHASES) >= 2


def test_ridge_and_trees_both_rank_a_monotone_function_of_one_weight_statistic():
    features, groups, _ = synthetic_zoo(cells=60)
    variance = features[:, 1]  # the first weight's variance: grows with the cell's scale
    target = np.log(variance) ** 3  # monotone in it, far from linear
    result = score(features, {"t": target}, groups, split(groups))
    assert result["tau_t"] > 0.8 and result["gbt_tau_t"] > 0.7, result
    assert result["gbt_r2_t"] > 0.5 and result["gbt_rho_t"] > 0.85
    assert result["gbt_r2_mean"] == result["gbt_r2_t"] and result["gbt_tau_mean"] == result["gbt_tau_t"]


def test_regularisation_is_chosen_without_looking_at_the_test_cells():
    features, groups, _ = synthetic_zoo()
    rng = np.random.default_rng(2)
    y = features @ rng.normal(size=features.shape[1]) + rng.normal(scale=2.0, size=len(groups))
    for index in range(3):
        test = split(groups, index).test
        scrambled = y.copy()
        scrambled[test] = rng.permutation(y[test]) * 5 + 1
        honest = score(features, {"y": y}, groups, split(groups, index))
        cheated = score(features, {"y": scrambled}, groups, split(groups, index))
        assert honest["alpha_y"] == cheated["alpha_y"]
        assert honest["r2_y"] != cheated["r2_y"]


def test_a_target_with_too_few_values_scores_nan_without_failing_the_others():
    features, groups, _ = synthetic_zoo(cells=10)
    rng = np.random.default_rng(3)
    sparse = np.full(len(groups), np.nan)
    sparse[:2] = 1.0
    constant = np.ones(len(groups))
    result = score(features, {"sparse": sparse, "constant": constant, "y": features[:, 0] * 2 + rng.normal(
        scale=1e-3, size=len(groups))}, groups, split(groups))
    for key in ("r2", "tau", "rho", "gbt_r2", "gbt_tau", "gbt_rho"):
        assert math.isnan(result[f"{key}_sparse"]) and math.isnan(result[f"{key}_constant"])
    assert result["r2_y"] > 0.9 and result["r2_mean"] == result["r2_y"] and result["tau_mean"] == result["tau_y"]


def test_the_phase_is_classified_and_nan_where_test_phases_were_never_trained_on():
    features, groups, scales = synthetic_zoo(cells=30)
    phases = np.where(scales < 1.0, "I", np.where(scales < 1.5, "II", "IV-B")).tolist()
    result = score(features, {}, groups, split(groups), phases)
    assert result["phase_bacc"] > 0.8 and result["gbt_phase_bacc"] > 0.6, result
    assert result["phase_c"] in CS and result["gbt_phase_leaf"] in LEAVES
    table = ZooTable(features, {}, groups, [1.0] * len(groups), phases)
    crossed = score(features, {}, groups, unit_split("cross_phase", table, Probe.Config()), phases)
    assert math.isnan(crossed["phase_bacc"]) and math.isnan(crossed["gbt_phase_bacc"])


def test_probe_runs_on_every_unit_of_the_tiny_zoo(tiny_zoo):
    assert contract_problems(Probe) == []
    probe = Probe()
    config = make_config(Probe, {"splits": "2"})
    assert probe.units(config) == ["random0", "random1", "cross_phase", "cross_load"]
    cells = list(open_cells(tiny_zoo).values())
    ctx = Context(config=config, spec=tiny_zoo.spec)
    result = probe.run(Zoo("random1", tiny_zoo.spec, cells), ctx)
    for target in ("test_acc", "gap", "cka", "log_hessian_trace", "mc"):
        for key in ("r2", "tau", "rho", "gbt_r2", "gbt_tau", "gbt_rho", "alpha", "gbt_leaf"):
            assert f"{key}_{target}" in result
        assert all(f"tau_{target}_{phase}" in result for phase in PHASES)
    assert {"r2_mean", "tau_mean", "gbt_r2_mean", "gbt_tau_mean", "phase_bacc", "gbt_phase_bacc"} <= set(result)
    assert set(Probe.key_metrics) <= set(result)
    assert all(isinstance(v, float) for v in result.values())
    assert (result["models_train"], result["models_val"], result["models_test"]) == (6, 3, 3)
    assert result["features"] == 2 * 2 * 7  # one hidden layer: two weights and two biases
    assert math.isfinite(result["r2_test_acc"]) and math.isfinite(result["r2_mean"])
    assert math.isnan(result["r2_cka"])  # one test cell: a cell-level target is constant there
    phase_iv = sum(len(c.model_ids) for c in cells if c.annotations.get("phase") in ("IV-A", "IV-B"))
    if phase_iv:  # the tiny zoo's wide, cold cell fits (Phase IV-B)
        crossed = probe.run(Zoo("cross_phase", tiny_zoo.spec, cells), ctx)
        assert crossed["models_test"] == phase_iv and math.isnan(crossed["phase_bacc"])
    loads = probe.run(Zoo("cross_load", tiny_zoo.spec, cells), ctx)  # two training cells: no validation part
    assert loads["models_test"] == sum(len(c.model_ids) for c in cells if c.load == max(x.load for x in cells))
    assert loads["models_val"] == 0 and math.isfinite(loads["r2_test_acc"])  # alpha by leaving a cell out
    with pytest.raises(ZoobenchError, match="unknown split 'random7'"):
        probe.run(Zoo("random7", tiny_zoo.spec, cells), ctx)
    with pytest.raises(UsageError, match="method probe: alphas must be positive"):
        make_config(Probe, {"alphas": "[]"})
    with pytest.raises(UsageError, match="leave cells to train on"):
        make_config(Probe, {"val_fraction": "0.5", "test_fraction": "0.5"})


# ---- zoo-scope summaries ----------------------------------------------------------------------------


def zoo_board(units: dict[str, float], method: str = "probe") -> Board:
    rows = [{"unit": u, "status": "ok", "n_models": 12, "r2_mean": v} for u, v in units.items()]
    meta = {"zoo": "z", "fingerprint": "f", "method": method, "version": "2", "config": {}, "config_hash": "h",
            "epoch": 1, "headline": "r2_mean", "higher_is_better": True, "scope": "zoo"}
    return Board(meta, tables.cell_table(pd.DataFrame(rows), "r2_mean"), "hand-made")


def test_a_zoo_scope_summary_groups_units_by_kind_and_keeps_all_for_a_single_kind():
    mixed = zoo_board({"random0": 0.5, "random1": 0.7, "random2": 0.6, "cross_phase": -1.0, "cross_load": 0.1})
    rows = tables.headline_rows(mixed.phases(), "r2_mean")
    assert rows["phase"].tolist() == ["random", "cross_load", "cross_phase"]
    assert rows["cells"].tolist() == [3, 1, 1]
    assert rows["mean"].tolist() == pytest.approx([0.6, 0.1, -1.0])  # no mean mixes the kinds
    single = zoo_board({f"split{i}": v for i, v in enumerate((0.5, 0.7, 0.6))}, "other")
    rows = tables.headline_rows(single.phases(), "r2_mean")
    assert rows["phase"].tolist() == ["all"] and rows["mean"].tolist() == pytest.approx([0.6])
    failed = mixed.table.assign(status=["failed" if u.startswith("cross") else "ok" for u in mixed.table["unit"]])
    assert tables.phase_table(failed, "r2_mean", "zoo")["phase"].unique().tolist() == ["random"]
    found = overview([mixed, single])
    assert found[["method", "phase"]].values.tolist() == [["probe", "random"], ["other", "all"]]
    grid = overview_grid(found).set_index("method")
    assert grid.loc["probe", "all"].endswith("n=3 (random)") and grid.loc["other", "all"].endswith("n=3")
