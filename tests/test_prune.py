"""The prune method: exact zero counts per mode, biases and norms untouched, sparsity 0 is the dense
model, masks survive retraining, and a real cell's accuracy curve is sane."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from zoobench.models import vit
from zoobench.bench.cells import open_cells
from zoobench.data import DATASETS
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
    result = Prune().run(cells["w16-bs64"], context(tiny_zoo, sparsities="[0.0, 0.3, 0.6, 0.9, 0.99]"))
    assert result["acc_s0"] == result["dense_acc"] and result["loss_s0"] == result["dense_loss"]
    assert result["dense_acc"] > 0.5
    assert result["acc_s0.99"] < result["dense_acc"] - 0.2  # 1% of the weights left: near chance
    assert result["acc_s0.3"] >= result["acc_s0.9"] - 0.05
    assert result["max_sparsity"] in (0.0, 0.3, 0.6, 0.9)


def test_max_sparsity_is_the_last_sparsity_before_the_first_drop(tiny_zoo):
    accuracies = {0.1: 0.9, 0.5: 0.895, 0.7: 0.85, 0.9: 0.9}  # dense 0.9; a recovery after the drop
    model = nn.Linear(10, 10)  # 100 weights: every grid sparsity is an exact count
    cell = SimpleNamespace(id="fake", model_ids=["a"], diverged=[], model=lambda model_id: model,
                           recalibrate=lambda m: None,
                           evaluate=lambda m: {"loss": 1.0, "acc": accuracies.get(_sparsity(m), 0.9)})
    result = Prune().run(cell, context(tiny_zoo, sparsities="[0.1, 0.5, 0.7, 0.9]", margin="0.01"))
    assert [result[f"acc_s{s:g}"] for s in (0.1, 0.5, 0.7, 0.9)] == [0.9, 0.895, 0.85, 0.9]
    assert result["max_sparsity"] == 0.5
    accuracies[0.1] = 0.8
    assert Prune().run(cell, context(tiny_zoo, sparsities="[0.1, 0.5, 0.7, 0.9]"))["max_sparsity"] == 0.0


def test_a_task_without_accuracy_gets_its_metrics_per_sparsity_and_no_headline(tiny_zoo):
    model = nn.Linear(10, 1)
    cell = SimpleNamespace(id="pinn", model_ids=["a"], diverged=[], model=lambda model_id: model,
                           recalibrate=lambda m: None,
                           evaluate=lambda m: {"loss": 1.0, "rel_l2": float((m.weight == 0).sum())})
    result = Prune().run(cell, context(tiny_zoo, sparsities="[0.5]"))
    assert result == {"dense_loss": 1.0, "dense_rel_l2": 0.0, "loss_s0.5": 1.0, "rel_l2_s0.5": 5.0}


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
