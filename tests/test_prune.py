"""The prune method: exact zero counts per mode, biases and norms untouched, sparsity 0 is the dense
model, masks survive retraining, a real cell's accuracy curve is sane, and the headline measures
what pruning keeps above chance (a model at chance scores 0, for classification and the PINN)."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from zoobench.models import vit
from zoobench.bench.cells import open_cells
from fabricate import fabricate
from zoobench.data import DATASETS, load_dataset
from zoobench.method import Context, make_config
from zoobench.methods.prune import Prune, prunable, prune_model


def convnet() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 6, 3), nn.BatchNorm2d(6), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 6 * 6, 10),
                         nn.ReLU(), nn.Linear(10, 4))


def weights(model: nn.Module) -> list[torch.Tensor]:
    return [layer.weight for layer, _ in prunable(model)]


@pytest.fixture(scope="module")
def cells(tiny_zoo):
    return open_cells(tiny_zoo)


def context(tiny_zoo, **settings: str) -> Context:
    return Context(config=make_config(Prune, settings), spec=tiny_zoo.spec)


@pytest.mark.parametrize("sparsity", [0.0, 0.1, 0.37, 0.5, 0.9, 0.99])
def test_global_pruning_zeroes_exactly_the_fraction_of_all_prunable_weights(sparsity):
    model = prune_model(convnet(), sparsity, "global")
    total = sum(w.numel() for w in weights(model))
    assert sum(int((w == 0).sum()) for w in weights(model)) == round(sparsity * total)
    layer_fractions = [float((w == 0).float().mean()) for w in weights(model)]
    if sparsity == 0.9:  # global ranking, not per layer: the layers end up unequally sparse
        assert max(layer_fractions) - min(layer_fractions) > 0.05


@pytest.mark.parametrize("sparsity", [0.0, 0.1, 0.37, 0.5, 0.9, 0.99])
def test_layer_pruning_zeroes_exactly_the_fraction_of_each_layer(sparsity):
    model = prune_model(convnet(), sparsity, "layer")
    for w in weights(model):
        assert int((w == 0).sum()) == round(sparsity * w.numel())


@pytest.mark.parametrize("mode", ["global", "layer"])
def test_the_smallest_magnitudes_go_and_biases_and_norms_stay(mode):
    dense = convnet()
    model = prune_model(copy.deepcopy(dense), 0.5, mode)
    assert len(weights(model)) == 3  # two Linear and one Conv, not the BatchNorm
    for name, tensor in dense.state_dict().items():
        if not name.endswith("weight") or name.startswith("1."):  # biases, BatchNorm weight and buffers
            assert torch.equal(model.state_dict()[name], tensor), name
    pairs = list(zip(weights(model), weights(dense)))
    for kept, original in pairs:
        assert torch.equal(kept[kept != 0], original[kept != 0])
    groups = [pairs] if mode == "global" else [[pair] for pair in pairs]  # where magnitudes are ranked
    for group in groups:
        survivors = torch.cat([original[kept != 0].abs() for kept, original in group])
        removed = torch.cat([original[kept == 0].abs() for kept, original in group])
        assert survivors.min() >= removed.max()


def test_masks_stay_in_place_through_retraining_and_attention_out_proj_is_left_dense():
    options = {"dim": 6, "depth": 1, "heads": 3, "patch_size": 8, "mlp_ratio": 2.0}
    model = prune_model(vit.build(options, DATASETS.get("cifar10"), {}), 0.5, "layer")
    attention = model.encoder.layers[0].self_attn
    assert all(layer is not attention.out_proj for layer, _ in prunable(model))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(2):  # a second step would fail on a mask applied outside the module's forward
        loss = model(torch.randn(2, 3, 32, 32)).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert all(int((w == 0).sum()) == round(0.5 * w.numel()) for w in weights(model))


def test_sparsity_zero_is_the_dense_model_and_the_curve_falls(tiny_zoo, cells):
    cell = cells["w16-bs64"]
    result = Prune().run(cell, context(tiny_zoo, sparsities="[0.0, 0.3, 0.6, 0.9, 0.99]"))
    assert result["acc_s0"] == result["dense_acc"] and result["loss_s0"] == result["dense_loss"]
    assert result["dense_acc"] > 0.5
    assert result["acc_s0.99"] < result["dense_acc"] - 0.2  # 1% of the weights left: near chance
    assert result["acc_s0.3"] >= result["acc_s0.9"] - 0.05
    assert result["max_sparsity"] in (0.0, 0.3, 0.6, 0.9)
    assert result["chance"] == cell.data.chance("test")


def fake_cell(evaluate, chance: float | None = 0.1) -> SimpleNamespace:
    """One seed, a 10 x 10 Linear model (every grid sparsity an exact count) and `evaluate(model)`."""
    model = nn.Linear(10, 10)
    return SimpleNamespace(id="fake", model_ids=["a"], diverged=[], model=lambda model_id: model,
                           recalibrate=lambda m: False, evaluate=evaluate,
                           data=SimpleNamespace(chance=lambda split: chance))


def accuracy_cell(accuracies: dict[float, float], dense: float, chance: float = 0.1) -> SimpleNamespace:
    """A fake whose accuracy is `dense` unpruned and accuracies[sparsity] pruned (dense where missing)."""
    def evaluate(model):
        sparsity = _sparsity(model)
        return {"loss": 1.0, "acc": dense if sparsity is None else accuracies.get(sparsity, dense)}

    return fake_cell(evaluate, chance)


def test_max_sparsity_is_the_last_sparsity_before_the_first_drop_above_chance(tiny_zoo):
    accuracies = {0.1: 0.9, 0.5: 0.895, 0.7: 0.85, 0.9: 0.9}  # dense 0.9; a recovery after the drop
    grid = {"sparsities": "[0.1, 0.5, 0.7, 0.9]"}
    result = Prune().run(accuracy_cell(accuracies, 0.9), context(tiny_zoo, **grid, keep="0.99"))
    assert [result[f"acc_s{s:g}"] for s in (0.1, 0.5, 0.7, 0.9)] == [0.9, 0.895, 0.85, 0.9]
    assert result["chance"] == 0.1
    assert result["max_sparsity"] == 0.5  # 0.895 - 0.1 >= 0.99 x 0.8; 0.85 - 0.1 is not
    accuracies[0.1] = 0.8
    assert Prune().run(accuracy_cell(accuracies, 0.9), context(tiny_zoo, **grid))["max_sparsity"] == 0.0
    loose = context(tiny_zoo, **grid, keep="0.9")  # 0.85 - 0.1 keeps 94% of 0.8: only the first drop counts
    assert Prune().run(accuracy_cell({0.7: 0.85}, 0.9), loose)["max_sparsity"] == 0.9


@pytest.mark.parametrize("dense, pruned, expected", [
    (0.1, 0.1, 0.0),  # at chance, and pruning cannot take it lower: version 1 scored this 0.9
    (0.08, 0.08, 0.0),  # below chance
    (0.12, 0.11, 0.0),  # barely above chance, and half of that lost at once
    (0.9, 0.9, 0.9),  # a robust model keeps everything over the whole grid
    (0.9, 0.8, 0.0),  # a fragile one nothing
])
def test_a_model_at_chance_scores_nothing_and_a_robust_one_the_whole_grid(tiny_zoo, dense, pruned, expected):
    cell = accuracy_cell({s: pruned for s in (0.1, 0.5, 0.9)}, dense)
    assert Prune().run(cell, context(tiny_zoo, sparsities="[0.1, 0.5, 0.9]"))["max_sparsity"] == expected


def test_a_real_model_collapsed_to_a_constant_prediction_scores_zero(tiny_zoo, cells):
    """The worst-phase failure of version 1, on real data: a network that always predicts one class
    stays at chance however hard it is pruned, so 'within a margin of dense' held at every sparsity."""
    cell = copy.copy(cells["w16-bs64"])
    majority = int(torch.bincount(cell.data.y_test).argmax())

    def collapsed(model_id):
        model = cells["w16-bs64"].model(model_id)
        with torch.no_grad():
            model[-1].weight.mul_(1e-3)  # the smallest weights: pruned first, as in a dead network
            model[-1].bias.copy_(torch.nn.functional.one_hot(torch.tensor(majority), 10).float() * 10)
        return model

    cell.model = collapsed
    result = Prune().run(cell, context(tiny_zoo, sparsities="[0.1, 0.5, 0.9]"))
    assert result["dense_acc"] == result["chance"] == result["acc_s0.9"]  # at chance, pruned or not
    assert result["max_sparsity"] == 0.0
    robust = Prune().run(cells["w16-bs64"], context(tiny_zoo, sparsities="[0.1, 0.5, 0.9]"))
    assert robust["dense_acc"] > robust["chance"] + 0.5 and robust["max_sparsity"] >= 0.1


def test_chance_is_what_evaluate_gives_the_best_constant_prediction(tmp_path, cells):
    class Constant(nn.Module):
        def __init__(self, index: int, outputs: int) -> None:
            super().__init__()
            self.index, self.outputs = index, outputs

        def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, classes) for images, (B, T, vocab) for tokens
            return nn.functional.one_hot(torch.full(x.shape[:1] if x.dim() > 2 else x.shape, self.index),
                                         self.outputs).float()

    digits = cells["w16-bs64"].data
    for split in ("test", "train"):
        assert digits.chance(split) == max(digits.evaluate(Constant(c, 10), split)["acc"] for c in range(10))
    assert 0.1 <= digits.chance("test") < 0.11  # a stratified split of nearly balanced classes
    fabricate("openwebtext", tmp_path)
    tokens = load_dataset("openwebtext", tmp_path, block_size=16)
    ys = torch.cat([y.flatten() for _, y in tokens._evaluation_batches("test")])
    mode = int(torch.bincount(ys).argmax())
    assert tokens.chance("test") == tokens.evaluate(Constant(mode, 97))["acc"] == pytest.approx(
        (ys == mode).float().mean().item())
    assert load_dataset("convection").chance("test") is None


def test_the_pinn_headline_is_what_pruning_keeps_of_its_error_reduction_over_zero(tiny_zoo):
    def pinn(dense: float, errors: dict[float, float]) -> SimpleNamespace:
        def evaluate(model):
            sparsity = _sparsity(model)
            return {"loss": 1.0, "rel_l2": dense if sparsity is None else errors.get(sparsity, dense)}

        return fake_cell(evaluate, chance=None)

    grid = context(tiny_zoo, sparsities="[0.1, 0.5, 0.7, 0.9]")
    result = Prune().run(pinn(0.02, {0.1: 0.025, 0.5: 0.0298, 0.7: 0.04, 0.9: 0.02}), grid)
    assert "chance" not in result and result["dense_rel_l2"] == 0.02 and result["rel_l2_s0.7"] == 0.04
    assert result["max_sparsity"] == 0.5  # 1 - 0.0298 >= 0.99 x 0.98; 1 - 0.04 is not
    assert Prune().run(pinn(1.0, {}), grid)["max_sparsity"] == 0.0  # no better than u = 0, and stays so
    assert Prune().run(pinn(1.3, {}), grid)["max_sparsity"] == 0.0
    assert Prune().run(pinn(0.9, {0.1: 0.902}), grid)["max_sparsity"] == 0.0  # a failed solution keeps little


def test_a_task_with_neither_accuracy_nor_rel_l2_gets_its_metrics_per_sparsity_and_no_headline(tiny_zoo):
    cell = fake_cell(lambda m: {"loss": float((m.weight == 0).sum())}, chance=None)
    result = Prune().run(cell, context(tiny_zoo, sparsities="[0.5]"))
    assert result == {"dense_loss": 0.0, "recalibrated_loss": 0.0, "loss_s0.5": 50.0}


def _sparsity(model: nn.Module) -> float | None:
    """The fraction of zero weights of a pruned fake, None for the dense one."""
    return int((model.weight == 0).sum()) / 100 if hasattr(model, "weight_mask") else None


def test_masked_retraining_keeps_the_sparsity_and_recovers_accuracy(tiny_zoo, cells):
    cell = cells["w16-bs64"]
    settings = {"sparsities": "[0.8]", "mode": "layer"}
    plain = Prune().run(cell, context(tiny_zoo, **settings))
    retrained = Prune().run(cell, context(tiny_zoo, **settings, retrain_steps="60", retrain_lr="0.05"))
    assert retrained["acc_s0.8"] > plain["acc_s0.8"]
    model = prune_model(cell.models()[0], 0.8, "layer")
    cell.fit(model, 20, 0.05)
    assert all(int((w == 0).sum()) == round(0.8 * w.numel()) for w in weights(model))


@pytest.mark.parametrize("dense, pruned, kept", [
    (0.9, 0.5, 0.5),  # half of the 0.8 above chance
    (0.9, 0.05, 0.0),  # below chance keeps nothing
    (0.9, 0.95, 1.0),  # better than dense keeps all
    (0.12, 0.11, 0.5),  # a near-chance cell loses a point, half of what it had
])
def test_kept_is_the_share_of_the_dense_accuracy_above_chance_that_pruning_keeps(tiny_zoo, dense, pruned, kept):
    cell = accuracy_cell({0.9: pruned}, dense)
    result = Prune().run(cell, context(tiny_zoo, sparsities="[0.5, 0.9]"))
    assert result["kept_s0.9"] == pytest.approx(kept) and result["kept_s0.5"] == 1.0


def test_a_cell_no_better_than_chance_has_no_kept_share(tiny_zoo):
    result = Prune().run(accuracy_cell({}, 0.1), context(tiny_zoo, sparsities="[0.5, 0.9]"))
    assert "kept_s0.9" not in result and result["acc_s0.9"] == 0.1


def test_pruning_is_measured_against_the_dense_model_with_its_batchnorm_re_estimated(tiny_zoo):
    """A hot BatchNorm model's running statistics lag behind its weights: re-estimating them alone
    raises its accuracy, which must not be credited to pruning (version 3 compared with the stored
    model, so such cells 'improved' when pruned)."""
    def recalibrate(model):
        model.recalibrated = True
        return True

    def evaluate(model):  # 0.7 as stored, 0.9 re-estimated; pruning to 0.9 keeps 0.8 of it
        sparsity = _sparsity(model)
        if not getattr(model, "recalibrated", False):
            return {"loss": 1.0, "acc": 0.7}
        return {"loss": 1.0, "acc": 0.9 if sparsity in (None, 0.5) else 0.74}

    cell = fake_cell(evaluate)
    cell.recalibrate = recalibrate
    cell.model = lambda model_id: nn.Linear(10, 10)  # a fresh, unflagged model per call
    result = Prune().run(cell, context(tiny_zoo, sparsities="[0.5, 0.9]"))
    assert (result["dense_acc"], result["recalibrated_acc"]) == (0.7, 0.9)
    assert result["max_sparsity"] == 0.5  # 0.74 - 0.1 keeps 80% of 0.9 - 0.1, though it beats 0.7
    assert result["kept_s0.9"] == pytest.approx(0.8) and result["kept_s0.5"] == 1.0
