"""The ensemble method: repeating one model changes nothing, a real cell's ensemble is sane, and a
task without accuracy (the PINN) reports its own metrics and its gain as the reduction of the
relative L2 error."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from zoobench.bench.cells import open_cells
from zoobench.data import DATASETS
from zoobench.data.convection import load
from zoobench.errors import ZoobenchError
from zoobench.method import Context, make_config
from zoobench.methods.ensemble import Ensemble, MeanOutput


@pytest.fixture(scope="module")
def cells(tiny_zoo):
    return open_cells(tiny_zoo)


def context(tiny_zoo, **settings: str) -> Context:
    return Context(config=make_config(Ensemble, settings), spec=tiny_zoo.spec)


@pytest.mark.parametrize("copies", [2, 4])
def test_an_ensemble_of_one_model_repeated_is_that_model_exactly(cells, copies):
    cell = cells["w16-bs64"]
    model = cell.models()[0]
    alone = cell.evaluate(model)
    assert cell.evaluate(MeanOutput([copy.deepcopy(model) for _ in range(copies)])) == alone


def test_three_copies_agree_up_to_rounding_of_the_mean(cells):
    cell = cells["w16-bs64"]
    model = cell.models()[1]
    alone, repeated = cell.evaluate(model), cell.evaluate(MeanOutput([model] * 3))
    assert repeated["acc"] == alone["acc"]
    assert repeated["loss"] == pytest.approx(alone["loss"], rel=1e-6)


def test_the_mean_output_is_the_mean_of_the_members_outputs():
    torch.manual_seed(0)
    members = [nn.Linear(5, 3) for _ in range(3)]
    x = torch.randn(7, 5)
    expected = (members[0](x) + members[1](x) + members[2](x)) / 3
    torch.testing.assert_close(MeanOutput(members)(x), expected)


def test_wide_cell_ensemble_is_sane(tiny_zoo, cells):
    cell = cells["w16-bs64"]
    result = Ensemble().run(cell, context(tiny_zoo))
    members = [cell.evaluate(model)["acc"] for model in cell.models()]
    assert result["models"] == 3
    assert result["member_acc"] == pytest.approx(sum(members) / 3)
    assert result["best_member_acc"] == max(members)
    assert min(members) <= result["ensemble_acc"] <= 1.0
    assert -0.05 <= result["gain"] <= 0.3
    assert result["gain"] == pytest.approx(result["ensemble_acc"] - result["member_acc"])
    assert result["gain_over_best"] == pytest.approx(result["ensemble_acc"] - max(members))
    assert result["ensemble_loss"] > 0
    assert all(isinstance(value, float) for value in result.values())


def test_members_setting_takes_the_first_seeds_and_needs_that_many(tiny_zoo, cells):
    cell = cells["w4-bs128"]
    result = Ensemble().run(cell, context(tiny_zoo, members="2"))
    assert result["models"] == 2
    first_two = [cell.evaluate(model)["acc"] for model in cell.models()[:2]]
    assert result["member_acc"] == pytest.approx(sum(first_two) / 2)
    with pytest.raises(ZoobenchError, match="needs 4"):
        Ensemble().run(cell, context(tiny_zoo, members="4"))


def test_a_cell_with_one_healthy_seed_is_refused(tiny_zoo, cells):
    cell = copy.copy(cells["w4-bs64"])
    cell.model_ids, cell.diverged = cell.model_ids[:1], cell.model_ids[1:]
    with pytest.raises(ZoobenchError, match="1 healthy seed.*2 diverged"):
        Ensemble().run(cell, context(tiny_zoo))


def test_a_task_without_accuracy_reports_its_own_metrics_and_gains_in_relative_l2_error(tiny_zoo):
    info = DATASETS.get("convection")
    problem = load(info, {**info.options, "beta": 1.0, "collocation_points": 50}, None)
    torch.manual_seed(0)
    models = [nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1)) for _ in range(2)]
    cell = SimpleNamespace(id="pinn", model_ids=["a", "b"], diverged=[],
                           model=lambda model_id: models["ab".index(model_id)],
                           evaluate=lambda model, split="test": problem.evaluate(model.eval(), split))
    result = Ensemble().run(cell, context(tiny_zoo))
    assert "ensemble_acc" not in result and "best_member_acc" not in result
    errors = [problem.evaluate(m)["rel_l2"] for m in models]
    assert result["ensemble_rel_l2"] == pytest.approx(problem.evaluate(MeanOutput(models))["rel_l2"])
    assert result["member_rel_l2"] == pytest.approx(sum(errors) / 2)
    assert result["best_member_rel_l2"] == min(errors)  # the best member has the lowest error
    assert result["gain"] == pytest.approx(result["member_rel_l2"] - result["ensemble_rel_l2"])  # positive: better
    assert result["gain_over_best"] == pytest.approx(min(errors) - result["ensemble_rel_l2"])


def test_a_task_with_neither_accuracy_nor_relative_error_has_no_gain(tiny_zoo):
    models = {"a": nn.Identity(), "b": nn.Identity()}
    losses = {id(models["a"]): 1.0, id(models["b"]): 3.0}  # the ensemble: 2.0
    cell = SimpleNamespace(id="loss-only", model_ids=["a", "b"], diverged=[], model=models.get,
                           evaluate=lambda model, split="test": {"loss": losses.get(id(model), 2.0)})
    result = Ensemble().run(cell, context(tiny_zoo))
    assert result == {"models": 2.0, "ensemble_loss": 2.0, "member_loss": 2.0}
