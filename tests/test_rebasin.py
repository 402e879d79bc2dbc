"""rebasin: permutation specs keep the function, weight matching finds planted permutations, merging
a model with its permuted copy gives the model back, and the method runs end to end on a zoo cell."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from zoobench.bench.cells import open_cells
from zoobench.errors import UsageError, ZoobenchError
from zoobench.method import Cell, Context, make_config
from zoobench.methods.permutation import apply_permutation, merge, permutation_spec, weight_matching
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


@pytest.mark.parametrize("case", ["mlp", "resnet18"])
def test_weight_matching_recovers_a_planted_permutation(case):
    model_recipe, _ = CASES[case]
    state = randomized(build_model(model_recipe)).state_dict()
    spec = permutation_spec(model_recipe["model"]["architecture"], state)
    plant = planted(spec)
    found, sweeps = weight_matching(spec, state, apply_permutation(spec, plant, state), seed=3)
    assert sweeps >= 2  # one sweep to find it, one to see nothing changes
    for name, perm in plant.items():
        assert torch.equal(found[name], torch.argsort(perm)), name
    aligned = apply_permutation(spec, found, apply_permutation(spec, plant, state))
    for key, tensor in state.items():
        assert torch.equal(aligned[key], tensor), key


def test_merging_with_a_permuted_copy_returns_the_model():
    state = randomized(build_model(recipe(MLP, "digits"))).state_dict()
    spec = permutation_spec("mlp", state)
    copy = apply_permutation(spec, planted(spec), state)
    merged, aligned, sweeps = merge(spec, [state, copy])
    for key, tensor in state.items():
        torch.testing.assert_close(merged[key], tensor)
    assert len(aligned) == 2 and len(sweeps) == 1


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


def test_run_end_to_end_on_a_zoo_cell(tiny_zoo, cells):
    cell = wide_cell(cells)
    ctx = context(tiny_zoo)
    assert ctx.config.alphas >= 25
    result = Rebasin().run(cell, ctx)
    expected = {"merged_acc", "merged_loss", "naive_merged_acc", "naive_merged_loss", "member_acc",
                "member_loss", "gain", "loss_gain", "barrier_naive", "barrier_aligned", "loss_barrier_naive",
                "loss_barrier_aligned", "match_iterations", "models"}
    assert set(result) == expected
    assert all(isinstance(v, float) and math.isfinite(v) for v in result.values())
    assert result["models"] == 3.0 and result["match_iterations"] >= 2
    assert result["gain"] == pytest.approx(result["merged_acc"] - result["member_acc"])
    assert result["barrier_aligned"] <= result["barrier_naive"] + 0.02
    assert result["loss_barrier_aligned"] <= result["loss_barrier_naive"] + 0.02
    assert min(result["barrier_naive"], result["barrier_aligned"]) >= 0.0
    assert Rebasin().run(cell, ctx) == result  # deterministic


def test_run_needs_two_healthy_seeds_and_valid_options(tiny_zoo, cells):
    cell = dataclasses.replace(wide_cell(cells), model_ids=wide_cell(cells).model_ids[:1])
    with pytest.raises(ZoobenchError, match="at least 2 healthy seeds, cell has 1"):
        Rebasin().run(cell, context(tiny_zoo))
    with pytest.raises(UsageError, match="--set alphas=2: method rebasin expects an integer >= 3"):
        context(tiny_zoo, alphas="2")
    with pytest.raises(UsageError, match="--set error_split=validation: method rebasin expects 'train' | 'test'"):
        context(tiny_zoo, error_split="validation")


class NoAccuracyCell(Cell):
    """A cell whose task reports only a loss, as the convection PINN's does."""

    def evaluate(self, model, split: str = "test", data=None) -> dict[str, float]:
        return {"loss": super().evaluate(model, split, data)["loss"]}


def test_tasks_without_accuracy_get_loss_keys_only(tiny_zoo, cells):
    base = wide_cell(cells)
    cell = NoAccuracyCell(**{f.name: getattr(base, f.name) for f in dataclasses.fields(Cell)})
    result = Rebasin().run(cell, context(tiny_zoo, alphas="5"))
    assert not any("acc" in key for key in result) and "gain" not in result
    assert result["loss_gain"] == pytest.approx(result["member_loss"] - result["merged_loss"])
    assert result["barrier_naive"] == result["loss_barrier_naive"]
    assert result["barrier_aligned"] == result["loss_barrier_aligned"]
