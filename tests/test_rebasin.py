"""rebasin: permutation specs keep the function; weight matching finds planted permutations and every
restart ends at a fixed point with the objective it reports; MergeMany gives a model back from its
permuted copies, stops where no assignment improves and does not depend on the order of the seeds;
the method runs end to end on a zoo cell, with or without accuracy."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from scipy.optimize import linear_sum_assignment

from zoobench.bench.cells import open_cells
from zoobench.errors import UsageError, ZoobenchError
from zoobench.method import Cell, Context, make_config
from zoobench.models.permutation import (aligned_average, apply_permutation, average, merge_many,
                                         permutation_spec, weight_matching)
from zoobench.methods.rebasin import Rebasin, barrier
from zoobench.models import build_model

MLP = {"architecture": "mlp", "options": {"width": 16, "depth": 3, "activation": "relu"}}


def recipe(model: dict, dataset: str) -> dict:
    return {"model": model, "data": {"dataset": dataset, "options": {}}}


def resnet(depth: int, width: int) -> dict:
    return recipe({"architecture": "resnet", "options": {"width": width, "depth": depth}}, "cifar10")


def randomized(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """The builder's weights, with every bias and BatchNorm tensor (affine and running statistics)
    random too, so that a tensor the spec forgot or permuted wrongly changes the output."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith(("running_var", "bn1.weight", "bn2.weight", "bn3.weight", "downsample.1.weight")):
                tensor.copy_(torch.rand(tensor.shape, generator=generator) + 0.5)
            elif name.endswith(("bias", "running_mean")):
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * 0.1)
    return model.eval()


def planted(spec, seed: int = 1) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {name: torch.randperm(size, generator=generator) for name, size in spec.sizes.items()}


CASES = {
    "mlp": (recipe(MLP, "digits"), (1, 8, 8)),
    "resnet18": (resnet(18, 4), (3, 32, 32)),
    "resnet50": (resnet(50, 2), (3, 32, 32)),
}


@pytest.mark.parametrize("case", CASES)
def test_a_randomly_permuted_network_computes_the_same_function(case):
    model_recipe, shape = CASES[case]
    torch.manual_seed(0)  # the weights, BatchNorm statistics and permutation drawn, whatever ran before
    model = randomized(build_model(model_recipe))
    state = model.state_dict()
    spec = permutation_spec(model_recipe["model"]["architecture"], state)
    permuted = build_model(model_recipe).eval()
    permuted.load_state_dict(apply_permutation(spec, planted(spec), state))
    assert any(not torch.equal(permuted.state_dict()[k], v) for k, v in state.items())  # really moved
    x = torch.randn(8, *shape, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(permuted(x), model(x), atol=1e-5, rtol=1e-5)


def test_resnet_spec_shares_one_permutation_per_residual_stage():
    spec = permutation_spec("resnet", build_model(resnet(18, 4)).state_dict())
    # ResNet-18's first stage has no projection shortcut, so it continues the stem's stream
    assert spec.axes["layer1.1.conv2.weight"][0] == spec.axes["conv1.weight"][0] == "conv1"
    assert spec.axes["layer2.0.downsample.0.weight"][:2] == ("layer2", "conv1")
    assert spec.axes["layer2.1.bn2.running_var"] == ("layer2",)
    assert spec.axes["layer2.1.conv1.weight"][:2] == ("layer2.1.conv1", "layer2")
    assert spec.axes["fc.weight"] == (None, "layer4")
    assert "bn1.num_batches_tracked" not in spec.axes
    assert len(spec.sizes) == 4 + 8  # 4 residual streams + one inner permutation per block


def objective(spec, reference, other) -> float:
    """Brute force: the sum over the matched tensors of <reference, other>, in float64."""
    return sum((reference[key].double() * other[key].double()).sum().item() for key in spec.matched_keys)


def no_assignment_improves(spec, reference: dict, other: dict, perms: dict) -> bool:
    """Whether ``perms`` is where coordinate descent must stop: no single permutation, re-solved
    with scipy against the others held fixed, raises <reference, permuted other> (float64)."""
    aligned = apply_permutation(spec, perms, other)
    for name, size in spec.sizes.items():
        similarity = torch.zeros(size, size, dtype=torch.float64)
        for key, axis in spec.matched_axes[name]:
            inverse = torch.argsort(perms[name])  # undo this permutation only
            b = aligned[key].double().index_select(axis, inverse).movedim(axis, 0).reshape(size, -1)
            similarity += reference[key].double().movedim(axis, 0).reshape(size, -1) @ b.T
        rows, columns = linear_sum_assignment(similarity.numpy(), maximize=True)
        current = similarity[rows, perms[name]].sum().item()
        if similarity[rows, columns].sum().item() > current + 1e-9 * abs(current):
            return False
    return True


def two_random_mlps(width: int = 16):
    model_recipe = recipe({**MLP, "options": {**MLP["options"], "width": width}}, "digits")
    torch.manual_seed(0)
    first, second = (randomized(build_model(model_recipe), seed).state_dict() for seed in (0, 1))
    return permutation_spec("mlp", first), first, second


@pytest.mark.parametrize("case", ["mlp", "resnet18"])
def test_weight_matching_recovers_a_planted_permutation(case):
    model_recipe, _ = CASES[case]
    state = randomized(build_model(model_recipe)).state_dict()
    spec = permutation_spec(model_recipe["model"]["architecture"], state)
    plant = planted(spec)
    [found] = weight_matching(spec, state, apply_permutation(spec, plant, state), seed=3)
    assert found.sweeps >= 2  # one sweep to find it, one to see nothing changes
    for name, perm in plant.items():
        assert torch.equal(found.perms[name], torch.argsort(perm)), name
    aligned = apply_permutation(spec, found.perms, apply_permutation(spec, plant, state))
    for key, tensor in state.items():
        assert torch.equal(aligned[key], tensor), key
    assert found.objective == pytest.approx(objective(spec, state, state), rel=1e-12)


def test_restarts_end_in_different_local_optima_each_a_fixed_point_with_its_objective():
    spec, first, second = two_random_mlps()
    found = weight_matching(spec, first, second, restarts=6, seed=0)
    assert len(found) == 6
    for matching in found:
        assert matching.objective == pytest.approx(objective(spec, first, apply_permutation(spec, matching.perms,
                                                                                              second)), rel=1e-12)
        assert no_assignment_improves(spec, first, second, matching.perms)
    objectives = [matching.objective for matching in found]
    assert len({round(value, 9) for value in objectives}) > 1  # the choice of local optimum is real
    # restart 0 is the published algorithm: the identity start, visiting orders from the seed
    assert same(weight_matching(spec, first, second, seed=0), found[:1])
    assert same(weight_matching(spec, first, second, restarts=6, seed=0), found)  # seeded
    assert not same(weight_matching(spec, first, second, restarts=6, seed=1), found)


def same(found: list, expected: list) -> bool:
    return len(found) == len(expected) and all(
        (a.objective, a.sweeps) == (b.objective, b.sweeps) and all(torch.equal(a.perms[n], b.perms[n]) for n in a.perms)
        for a, b in zip(found, expected))


@pytest.mark.parametrize("case", ["mlp", "resnet18"])
def test_merging_a_model_with_permuted_copies_returns_the_model(case):
    model_recipe, shape = CASES[case]
    torch.manual_seed(0)
    state = randomized(build_model(model_recipe)).state_dict()
    spec = permutation_spec(model_recipe["model"]["architecture"], state)
    copies = [apply_permutation(spec, planted(spec, seed), state) for seed in (1, 2)]
    runs = merge_many(spec, [copies[0], state, copies[1]], restarts=3)
    best = max(runs, key=lambda run: run.objective)
    merged, aligned = aligned_average(spec, [copies[0], state, copies[1]], best.perms)
    # all three aligned onto one frame (which one is a gauge): the merge is the model, permuted
    for key in state:
        torch.testing.assert_close(aligned[0][key], aligned[1][key])
        torch.testing.assert_close(merged[key], aligned[1][key])
    model, merged_model = (build_model(model_recipe).eval() for _ in range(2))
    model.load_state_dict(state)
    merged_model.load_state_dict(merged)  # BatchNorm statistics included: the copies' are the model's
    x = torch.randn(8, *shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(merged_model(x), model(x), atol=1e-5, rtol=1e-5)
    assert best.objective == pytest.approx(3 * objective(spec, state, state), rel=1e-9)  # 3 pairs, all equal


def three_random_mlps(width: int = 16) -> tuple:
    model_recipe = recipe({**MLP, "options": {**MLP["options"], "width": width}}, "digits")
    torch.manual_seed(0)
    states = [randomized(build_model(model_recipe), seed).state_dict() for seed in (0, 1, 2)]
    return model_recipe, permutation_spec("mlp", states[0]), states


def outputs(model_recipe: dict, state: dict) -> torch.Tensor:
    model = build_model(model_recipe).eval()
    model.load_state_dict(state)
    with torch.no_grad():
        return model(torch.randn(64, 1, 8, 8, generator=torch.Generator().manual_seed(5)))


def test_merge_many_is_a_fixed_point_of_every_assignment_with_its_objective():
    _, spec, states = three_random_mlps()
    for run in merge_many(spec, states, restarts=3):
        aligned = [apply_permutation(spec, perms, state) for perms, state in zip(run.perms, states)]
        pairs = [(i, j) for i in range(3) for j in range(i + 1, 3)]
        assert run.objective == pytest.approx(sum(objective(spec, aligned[i], aligned[j]) for i, j in pairs),
                                              rel=1e-12)
        for i in range(3):  # state i against the sum of the others: no assignment raises it
            others = {key: sum(aligned[j][key].double() for j in range(3) if j != i) for key in spec.matched_keys}
            assert no_assignment_improves(spec, others, states[i], run.perms[i])


def test_merge_many_does_not_depend_on_the_order_the_seeds_are_listed_in():
    model_recipe, spec, (a, b, c) = three_random_mlps()

    def merge(states: list) -> dict:
        best = max(merge_many(spec, states, restarts=3, seed=7), key=lambda run: run.objective)
        return aligned_average(spec, states, best.perms)[0]

    first, second = merge([a, b, c]), merge([c, a, b])
    for key in first:
        assert torch.equal(first[key], second[key]), key
    torch.testing.assert_close(outputs(model_recipe, first), outputs(model_recipe, second))

    def onto_the_first(states: list) -> dict:  # what a merge with a privileged seed does
        found = [max(weight_matching(spec, states[0], state, restarts=3), key=lambda m: m.objective)
                 for state in states[1:]]
        return average([states[0], *(apply_permutation(spec, m.perms, s) for m, s in zip(found, states[1:]))])

    # the check can tell: aligning onto whichever seed comes first changes the merged function
    difference = outputs(model_recipe, onto_the_first([a, b, c])) - outputs(model_recipe, onto_the_first([c, a, b]))
    assert difference.abs().max() > 1e-3


def test_unsupported_families_fail_with_a_clear_error():
    with pytest.raises(ZoobenchError, match="vit has no permutation spec"):
        permutation_spec("vit", {})
    with pytest.raises(ZoobenchError, match="does not know"):
        permutation_spec("mlp", {"1.weight": torch.zeros(2, 2), "head.weight": torch.zeros(2, 2)})


def test_barrier_is_the_largest_excess_over_the_chord():
    assert barrier([0.1, 0.1, 0.1]) == 0.0
    assert barrier([0.0, 0.5, 1.0]) == 0.0
    assert barrier([0.2, 0.9, 0.6, 0.4]) == pytest.approx(0.9 - (2 / 3 * 0.2 + 1 / 3 * 0.4))


# --- the method on the shared tiny digits zoo ---------------------------------------------------


@pytest.fixture(scope="module")
def cells(tiny_zoo):
    return open_cells(tiny_zoo)


def context(tiny_zoo, **settings: str) -> Context:
    return Context(config=make_config(Rebasin, settings), spec=tiny_zoo.spec)


def wide_cell(cells) -> Cell:
    return max(cells.values(), key=lambda cell: (cell.load, -cell.temperature))  # width 16, batch 64


class PermutedCopyCell(Cell):
    """A cell whose second model is its first with the units randomly permuted."""

    def state(self, model_id: str, epoch: int | None = None) -> dict:
        state = super().state(self.model_ids[0], epoch)
        if model_id == self.model_ids[0]:
            return state
        spec = permutation_spec("mlp", state)
        return apply_permutation(spec, planted(spec), state)


def test_run_on_a_model_and_its_permuted_copy_gives_the_model_back(tiny_zoo, cells):
    base = wide_cell(cells)
    fields = {f.name: getattr(base, f.name) for f in dataclasses.fields(Cell)}
    cell = PermutedCopyCell(**{**fields, "model_ids": [base.model_ids[0], "permuted-copy"]})
    result = Rebasin().run(cell, context(tiny_zoo))
    original = base.evaluate(base.model(base.model_ids[0]))
    assert result["merged_acc"] == pytest.approx(original["acc"], abs=1e-9)
    assert result["member_acc"] == pytest.approx(original["acc"], abs=1e-9)
    assert result["gain"] == pytest.approx(0.0, abs=1e-9)
    assert result["barrier_aligned"] == pytest.approx(0.0, abs=1e-6)
    assert result["loss_barrier_aligned"] == pytest.approx(0.0, abs=1e-6)
    # without alignment the same two networks are far apart
    assert result["loss_barrier_naive"] > 0.05
    assert result["naive_merged_loss"] > result["merged_loss"] + 0.05


SPREADS = {f"{name}_{statistic}" for name in ("gain", "midpoint_barrier", "midpoint_loss_barrier")
           for statistic in ("min", "max", "mean")} | {"match_cosine_max", "match_cosine_min", "objective_spread",
                                                     "match_optima", "merge_objective_spread", "merge_passes"}


def test_run_end_to_end_on_a_zoo_cell(tiny_zoo, cells):
    cell = wide_cell(cells)
    ctx = context(tiny_zoo)
    assert ctx.config.alphas >= 25 and ctx.config.alphas % 2 == 1 and ctx.config.restarts > 1
    result = Rebasin().run(cell, ctx)
    expected = {"merged_acc", "merged_loss", "naive_merged_acc", "naive_merged_loss", "member_acc",
                "member_loss", "gain", "loss_gain", "barrier_naive", "barrier_aligned", "loss_barrier_naive",
                "loss_barrier_aligned", "match_iterations", "models", *SPREADS}
    assert set(result) == expected
    assert all(isinstance(v, float) and math.isfinite(v) for v in result.values())
    assert result["models"] == 3.0 and result["match_iterations"] >= 1 and result["merge_passes"] >= 1
    assert result["gain"] == pytest.approx(result["merged_acc"] - result["member_acc"])
    for name in ("gain", "midpoint_barrier", "midpoint_loss_barrier"):
        assert result[f"{name}_min"] - 1e-12 <= result[f"{name}_mean"] <= result[f"{name}_max"] + 1e-12, name
    assert result["gain_min"] <= result["gain"] <= result["gain_max"]
    assert result["barrier_aligned"] <= result["barrier_naive"] + 0.02
    assert result["loss_barrier_aligned"] <= result["loss_barrier_naive"] + 0.02
    assert min(result["barrier_naive"], result["barrier_aligned"]) >= 0.0
    # the kept alignment's midpoint is on its path: its excess is at most the path's barrier
    assert result["midpoint_barrier_min"] <= result["barrier_aligned"] + 1e-12
    assert result["midpoint_loss_barrier_min"] <= result["loss_barrier_aligned"] + 1e-12
    assert result["midpoint_barrier_min"] <= result["midpoint_barrier_max"]
    assert 0.0 < result["match_cosine_min"] <= result["match_cosine_max"] < 1.0
    assert result["objective_spread"] == pytest.approx(1 - result["match_cosine_min"] / result["match_cosine_max"])
    assert 1 <= result["match_optima"] <= ctx.config.restarts
    assert result["merge_objective_spread"] >= 0.0
    assert Rebasin().run(cell, ctx) == result  # deterministic
    single = Rebasin().run(cell, context(tiny_zoo, restarts="1"))
    assert single["match_optima"] == 1.0 and single["objective_spread"] == single["merge_objective_spread"] == 0.0
    assert single["midpoint_barrier_min"] == single["midpoint_barrier_max"]
    assert single["gain_min"] == single["gain"] == single["gain_max"] == single["gain_mean"]
    assert single["barrier_naive"] == result["barrier_naive"]  # the restarts leave the naive path alone


def test_listing_the_seeds_in_another_order_gives_the_same_merge(tiny_zoo, cells):
    cell = wide_cell(cells)
    reordered = dataclasses.replace(cell, model_ids=[*cell.model_ids[1:], cell.model_ids[0]])
    ctx = context(tiny_zoo, restarts="3", alphas="3")
    result, other = Rebasin().run(cell, ctx), Rebasin().run(reordered, ctx)
    merge_keys = [key for key in result if key.startswith(("merged_", "member_", "gain", "loss_gain", "merge_"))]
    assert len(merge_keys) == 11
    # the same merge; the members' mean may differ in the last bit (summed in the listed order)
    assert {key: other[key] for key in merge_keys} == pytest.approx({key: result[key] for key in merge_keys},
                                                                    rel=1e-12, abs=1e-12)
    assert other["merged_acc"] == result["merged_acc"] and other["merged_loss"] == result["merged_loss"]
    assert other["barrier_naive"] != result["barrier_naive"]  # the pair barriers do follow the first two seeds


def test_run_needs_two_healthy_seeds_and_valid_options(tiny_zoo, cells):
    cell = dataclasses.replace(wide_cell(cells), model_ids=wide_cell(cells).model_ids[:1])
    with pytest.raises(ZoobenchError, match="at least 2 healthy seeds, cell has 1"):
        Rebasin().run(cell, context(tiny_zoo))
    with pytest.raises(UsageError, match="--set alphas=2: method rebasin expects an integer >= 3"):
        context(tiny_zoo, alphas="2")
    with pytest.raises(UsageError, match="--set restarts=0: method rebasin expects an integer >= 1"):
        context(tiny_zoo, restarts="0")
    with pytest.raises(UsageError, match="--set error_split=validation: method rebasin expects 'train' | 'test'"):
        context(tiny_zoo, error_split="validation")


class NoAccuracyCell(Cell):
    """A cell whose task reports only a loss."""

    def evaluate(self, model, split: str = "test", data=None) -> dict[str, float]:
        return {"loss": super().evaluate(model, split, data)["loss"]}


class RelativeErrorCell(Cell):
    """A cell whose task reports a loss, and on the test split a relative L2 error, as the convection PINN's does."""

    def evaluate(self, model, split: str = "test", data=None) -> dict[str, float]:
        loss = super().evaluate(model, split, data)["loss"]
        return {"loss": loss, "rel_l2": math.sqrt(loss)} if split == "test" else {"loss": loss}


def test_tasks_without_accuracy_get_loss_keys_and_a_gain_from_the_relative_error(tiny_zoo, cells):
    base = wide_cell(cells)
    fields = {f.name: getattr(base, f.name) for f in dataclasses.fields(Cell)}
    result = Rebasin().run(NoAccuracyCell(**fields), context(tiny_zoo, alphas="5", restarts="2"))
    assert not any("acc" in key or "rel_l2" in key for key in result) and "gain" not in result
    assert not any(key.startswith("gain") for key in result)  # missing, not invented
    assert result["loss_gain"] == pytest.approx(result["member_loss"] - result["merged_loss"])
    assert result["barrier_naive"] == result["loss_barrier_naive"]
    assert result["barrier_aligned"] == result["loss_barrier_aligned"]

    result = Rebasin().run(RelativeErrorCell(**fields), context(tiny_zoo, alphas="5", restarts="2"))
    assert not any("acc" in key for key in result)
    assert result["gain"] == pytest.approx(result["member_rel_l2"] - result["merged_rel_l2"])
    assert result["gain_min"] <= result["gain"] <= result["gain_max"]
    assert result["barrier_aligned"] == result["loss_barrier_aligned"]
