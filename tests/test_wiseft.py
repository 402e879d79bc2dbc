"""The wiseft method: the path's ends are the stored checkpoints, selection on the reported split
cannot lose, BatchNorm is re-estimated inside the path, and bad settings fail clearly."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from zoobench.bench.cells import open_cells
from zoobench.errors import ZoobenchError
from zoobench.method import Context, make_config
from zoobench.methods.wiseft import WiseFT, choose


@pytest.fixture(scope="module")
def cells(tiny_zoo):
    return open_cells(tiny_zoo)


def context(tiny_zoo, **settings: str) -> Context:
    return Context(config=make_config(WiseFT, settings), spec=tiny_zoo.spec)


def mean_acc(cell, epoch: int | None = None) -> float:
    return sum(cell.evaluate(model)["acc"] for model in cell.models(epoch)) / len(cell.model_ids)


def test_alpha_one_is_the_final_model_and_alpha_zero_the_earlier_checkpoint(tiny_zoo, cells):
    cell = cells["w16-bs128"]
    result = WiseFT().run(cell, context(tiny_zoo, alphas="[0.0, 0.5, 1.0]", select_split="test"))
    assert result["start_epoch"] == 1  # the last stored epoch (of 0, 1, 3) before the metric epoch 3
    assert result["acc_a1"] == result["final_acc"] == mean_acc(cell)
    assert result["acc_a0"] == result["earlier_acc"] == mean_acc(cell, 1)
    assert result["earlier_acc"] != result["final_acc"]


@pytest.mark.parametrize("cell_id", ["w4-bs64", "w16-bs128"])
def test_choosing_alpha_on_the_reported_split_never_loses(tiny_zoo, cells, cell_id):
    result = WiseFT().run(cells[cell_id], context(tiny_zoo, select_split="test", start_epoch="0"))
    assert result["gain"] >= 0
    assert result["gain"] == pytest.approx(result["oracle_gain"])
    assert result["acc"] >= max(result[f"acc_a{a / 10:g}"] for a in range(11)) - 1e-12  # per-seed best >= best mean


def test_default_run_selects_on_train_and_reports_the_oracle_apart(tiny_zoo, cells):
    cell = cells["w16-bs64"]
    result = WiseFT().run(cell, context(tiny_zoo))
    assert 0.0 <= result["best_alpha"] <= 1.0
    assert result["gain"] == pytest.approx(result["acc"] - result["final_acc"])
    assert result["oracle_gain"] >= max(result["gain"], 0.0)
    assert result["oracle_acc"] >= result["acc"]
    assert result["final_acc"] > result["acc_a0"]  # epoch 1 of 3 is less trained on this wide cell
    assert all(isinstance(value, float) for value in result.values())


def test_ties_go_to_the_larger_alpha_after_accuracy_and_loss():
    path = {0.0: {"acc": 0.9, "loss": 0.3}, 0.5: {"acc": 0.9, "loss": 0.2}, 1.0: {"acc": 0.9, "loss": 0.2}}
    assert choose(path) == 1.0
    path[0.5]["loss"] = 0.1
    assert choose(path) == 0.5
    path[0.0]["acc"] = 0.95
    assert choose(path) == 0.0
    assert choose({0.0: {"loss": 0.1, "rel_l2": 0.5}, 1.0: {"loss": 0.2, "rel_l2": 0.1}}) == 0.0


def test_interior_points_are_recalibrated_and_the_ends_are_not(tiny_zoo):
    torch.manual_seed(0)
    models = {0: nn.Sequential(nn.Linear(2, 4), nn.BatchNorm1d(4), nn.Linear(4, 2)).eval()}
    models[2] = copy.deepcopy(models[0])
    with torch.no_grad():
        models[2][0].weight.add_(1.0)
    recalibrated = []
    cell = SimpleNamespace(id="fake", epoch=2, epochs=(0, 2), model_ids=["a"], diverged=[],
                           model=lambda model_id, epoch=None: copy.deepcopy(models[2 if epoch is None else epoch]),
                           recalibrate=lambda model: recalibrated.append(model[0].weight[0, 0].item()),
                           evaluate=lambda model, split="test": {"loss": 1.0, "acc": 0.5})
    WiseFT().run(cell, context(tiny_zoo, alphas="[0.0, 0.25, 0.5, 1.0]"))
    start = models[0][0].weight[0, 0].item()
    assert recalibrated == pytest.approx([start + 0.25, start + 0.5])


def test_tasks_without_accuracy_select_on_the_train_loss_and_report_no_gain(tiny_zoo):
    models = {0: nn.Linear(1, 1), 1: nn.Linear(1, 1)}
    with torch.no_grad():
        models[0].weight.fill_(0.0)
        models[1].weight.fill_(1.0)

    def evaluate(model, split="test"):  # train prefers weight (= alpha) 0.3, test 0.7
        if split == "train":
            return {"loss": abs(model.weight.item() - 0.3)}
        distance = abs(model.weight.item() - 0.7)
        return {"loss": distance, "rel_l2": 2 * distance}

    cell = SimpleNamespace(id="pinn", epoch=1, epochs=(0, 1), model_ids=["a"], diverged=[], evaluate=evaluate,
                           model=lambda model_id, epoch=None: models[1 if epoch is None else epoch],
                           recalibrate=lambda model: None)
    result = WiseFT().run(cell, context(tiny_zoo))
    assert result["best_alpha"] == pytest.approx(0.3)  # chosen on train, not on test
    assert result["rel_l2"] == pytest.approx(0.8) and result["final_rel_l2"] == pytest.approx(0.6)
    assert "gain" not in result and "acc" not in result


@pytest.mark.parametrize("settings, message", [
    ({"start_epoch": "3"}, "start_epoch 3 is not a stored epoch before 3"),
    ({"start_epoch": "2"}, "candidates: \\[0, 1\\]"),
    ({"alphas": "[0.0, 0.5]"}, "include 1.0"),
    ({"alphas": "[0.5, 1.5]"}, "expects a list of a number in \\[0, 1\\]"),
])
def test_bad_settings_fail_with_a_clear_message(tiny_zoo, cells, settings, message):
    with pytest.raises(ZoobenchError, match=message):
        WiseFT().run(cells["w4-bs64"], context(tiny_zoo, **settings))


def test_a_cell_evaluated_at_its_first_stored_epoch_has_nothing_to_interpolate_from(tiny_zoo, cells):
    cell = copy.copy(cells["w4-bs64"])
    cell.epoch = 0
    with pytest.raises(ZoobenchError, match="no checkpoint stored before epoch 0"):
        WiseFT().run(cell, context(tiny_zoo))
