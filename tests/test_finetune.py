"""finetune: the new head, the fixed-budget comparison with scratch, the digits transfer target, and
the PINN's form: the same PDE at another beta, a warm start trained with L-BFGS."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from test_epochavg import pinn_cells
from zoobench.bench.cells import open_cells
from zoobench.errors import ZoobenchError
from zoobench.method import Context, contract_problems, make_config
from zoobench.methods.finetune import Finetune, check_inputs, replace_head

TARGET = "digits_shifted"


def context(tiny_zoo, **settings: str) -> Context:
    spec = tiny_zoo.spec.with_overrides({"data.transfer_target": TARGET})
    return Context(config=make_config(Finetune, settings), spec=spec)


@pytest.fixture(scope="module")
def cell(tiny_zoo):
    return open_cells(tiny_zoo)["w16-bs64"]


def test_new_head_has_the_target_outputs_and_the_body_is_the_source(cell):
    model_id = cell.model_ids[0]
    model = cell.model(model_id)
    sample = cell.data.fixed_batches("test", 1, 5)[0][0]
    rng = torch.get_rng_state()
    head = replace_head(model, sample, 3, seed=7)
    assert torch.equal(torch.get_rng_state(), rng)  # the global generator is left alone
    assert model(sample).shape == (5, 3) and model[-1] is head
    source = cell.state(model_id)
    body = {k: v for k, v in model.state_dict().items() if not k.startswith(f"{len(model) - 1}.")}
    assert body and all(torch.equal(v, source[k]) for k, v in body.items())
    assert head.weight.shape == (3, source[f"{len(model) - 1}.weight"].shape[1])
    again = replace_head(cell.model(model_id), sample, 3, seed=7)
    assert torch.equal(again.weight, head.weight) and torch.equal(again.bias, head.bias)


def test_the_output_layer_is_found_by_its_outputs_and_tied_heads_are_refused():
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(6, 4)
            self.adapter = nn.Linear(8, 8)  # registered after the head, but not what makes the logits
            self.body = nn.Linear(8, 6)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.body(self.adapter(x)))

    net = Net()
    head = replace_head(net, torch.zeros(2, 8), 5, seed=0)
    assert net.fc is head and net(torch.zeros(2, 8)).shape == (2, 5)

    class Tied(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.wte = nn.Embedding(4, 6)
            self.lm_head = nn.Linear(6, 4, bias=False)
            self.lm_head.weight = self.wte.weight

        def forward(self, tokens: torch.Tensor) -> torch.Tensor:
            return self.lm_head(self.wte(tokens))

    with pytest.raises(ZoobenchError, match="tied"):
        replace_head(Tied(), torch.zeros(2, 3, dtype=torch.long), 5, seed=0)


def test_with_no_steps_the_scores_are_those_of_freshly_headed_models(tiny_zoo, cell):
    result = Finetune().run(cell, context(tiny_zoo, steps="0", seed="3"))
    target = context(tiny_zoo).load_data(TARGET)
    expected = {"target_acc": [], "scratch_acc": []}
    for i, model_id in enumerate(cell.model_ids):
        for key, model in (("target_acc", cell.model(model_id)), ("scratch_acc", cell.build_model(3 + i))):
            torch.manual_seed(3 + i)
            model[-1] = nn.Linear(model[-1].in_features, 10)
            expected[key].append(target.evaluate(model.eval())["acc"])
    for key, values in expected.items():
        assert result[key] == pytest.approx(np.mean(values), abs=1e-12), key
    assert result["source_acc"] == pytest.approx(np.mean([a["test_acc"] for a in cell.model_annotations.values()]))


def test_finetune_trains_both_models_on_the_target_with_one_budget(tiny_zoo, cell):
    assert contract_problems(Finetune) == []
    calls = []
    fit = cell.fit

    def spy(model, steps, lr, data=None, batch_size=64, seed=0, parameters=None, **rest):
        parameters = None if parameters is None else list(parameters)
        calls.append((steps, lr, data, batch_size, seed, None if parameters is None else len(parameters)))
        return fit(model, steps, lr, data=data, batch_size=batch_size, seed=seed, parameters=parameters, **rest)

    cell.fit = spy
    try:
        untrained = Finetune().run(cell, context(tiny_zoo, steps="0"))
        calls.clear()
        result = Finetune().run(cell, context(tiny_zoo, steps="60", lr="0.05", batch_size="32"))
        full_calls = list(calls)
        calls.clear()
        Finetune().run(cell, context(tiny_zoo, steps="5", head_only="true"))
    finally:
        del cell.fit
    target = full_calls[0][2]
    assert len(full_calls) == 2 * len(cell.model_ids)
    assert all(c[:2] == (60, 0.05) and c[2] is target and c[3] == 32 and c[5] is None for c in full_calls)
    assert all(c[1] == 0.01 for c in calls)  # the default lr for SGD
    assert [c[4] for c in full_calls] == [0, 0, 1, 1, 2, 2]  # the same data order for both models of a seed
    assert all(c[5] == 2 for c in calls)  # head_only: the new head's weight and bias, nothing else
    assert set(result) == {"target_acc", "scratch_acc", "source_acc", "target_loss", "scratch_loss", "source_loss",
                           "gain", "models"}
    assert all(math.isfinite(v) for v in result.values()) and result["models"] == 3
    assert result["gain"] == pytest.approx(result["target_acc"] - result["scratch_acc"])
    assert result["target_acc"] > untrained["target_acc"] + 0.1
    assert result["scratch_acc"] > untrained["scratch_acc"] + 0.1


def test_a_zoo_without_a_usable_target_is_a_clear_error(tiny_zoo, cell):
    no_target = Context(config=make_config(Finetune), spec=tiny_zoo.spec.with_overrides({"data.transfer_target": None}))
    with pytest.raises(ZoobenchError, match=r"\[data\] transfer_target.*or --set target_load=VALUE"):
        Finetune().run(cell, no_target)
    by_load = Context(config=make_config(Finetune, {"target_load": "32"}), spec=tiny_zoo.spec)
    with pytest.raises(ZoobenchError, match="target_load needs a zoo whose load is a dataset option.*model.width"):
        Finetune().run(cell, by_load)
    target = context(tiny_zoo).load_data(TARGET)
    wide = type(target)(*(t.repeat(1, 1, 1, 2) if t.dim() == 4 else t for t in (
        target.x_train, target.y_train, target.x_test, target.y_test, target.mean, target.std)))
    with pytest.raises(ZoobenchError, match=r"shape \(1, 8, 16\)"):
        check_inputs(cell.data, wide, "wide")


def test_the_digits_transfer_target_moves_every_image_by_one_pixel(tiny_zoo, cell):
    ctx = context(tiny_zoo)
    source, target = ctx.load_data("digits"), ctx.load_data(TARGET)
    for split in ("train", "test"):
        x, y = getattr(source, f"x_{split}").numpy(), getattr(source, f"y_{split}")
        moved = getattr(target, f"x_{split}").numpy()
        assert moved.shape == x.shape and moved.shape[1:] == (1, 8, 8) and moved.dtype == np.uint8
        assert torch.equal(getattr(target, f"y_{split}"), y)  # same split, same classes
        padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
        matches = np.stack([(padded[:, :, 1 - dy:9 - dy, 1 - dx:9 - dx] == moved).all(axis=(1, 2, 3))
                            for dy in (-1, 0, 1) for dx in (-1, 0, 1)])
        assert matches.any(axis=0).all()  # each image is a one-pixel shift of its source image ...
        assert (~matches[4]).mean() > 0.95  # ... and (blank-edged ones aside) not the unshifted image
    models = cell.models()
    on_source = np.mean([source.evaluate(m)["acc"] for m in models])
    on_target = np.mean([target.evaluate(m)["acc"] for m in models])
    assert on_target < on_source - 0.3  # the source models do not solve it as they are


@pytest.fixture(scope="module")
def pinn_cell(tmp_path_factory):
    return pinn_cells(tmp_path_factory.mktemp("finetune_pinn"))["beta1-lr1"]


def pinn_context(cell, **settings: str) -> Context:
    return Context(config=make_config(Finetune, settings), spec=cell.spec)


def test_on_the_pinn_the_target_is_the_pde_at_another_beta_and_the_whole_model_is_kept(pinn_cell):
    import dataclasses

    spec = pinn_cell.spec  # its transfer target: the same PDE at the grid's hardest beta
    assert (spec.data.transfer_target, spec.data.transfer_options) == ("convection", {"beta": 40.0,
                                                                                     "collocation_points": 100})
    hardest = Finetune().run(pinn_cell, pinn_context(pinn_cell, steps="0"))
    target = pinn_context(pinn_cell).load_data("convection", beta=40.0, collocation_points=100)
    assert hardest["target_rel_l2"] == pytest.approx(np.mean([target.evaluate(m)["rel_l2"]
                                                              for m in pinn_cell.models()]), rel=1e-6)
    none = dataclasses.replace(spec, data=dataclasses.replace(spec.data, transfer_target=None, transfer_options={}))
    with pytest.raises(ZoobenchError, match="no transfer target.*target_load"):
        Finetune().run(pinn_cell, Context(config=make_config(Finetune), spec=none))
    result = Finetune().run(pinn_cell, pinn_context(pinn_cell, target_load="5", steps="0"))
    target = pinn_context(pinn_cell).load_data("convection", **{**pinn_cell.recipe["data"]["options"], "beta": 5.0})
    transferred = [target.evaluate(model)["rel_l2"] for model in pinn_cell.models()]  # untouched: a warm start
    scratch = [target.evaluate(pinn_cell.build_model(i))["rel_l2"] for i in range(len(pinn_cell.model_ids))]
    assert result["target_rel_l2"] == pytest.approx(np.mean(transferred), rel=1e-6)
    assert result["scratch_rel_l2"] == pytest.approx(np.mean(scratch), rel=1e-6)
    own = [pinn_cell.evaluate(model)["rel_l2"] for model in pinn_cell.models()]
    assert result["source_rel_l2"] == pytest.approx(np.mean(own), rel=1e-6)
    assert result["gain"] == pytest.approx(result["scratch_rel_l2"] - result["target_rel_l2"])
    assert not any(key.endswith("_acc") for key in result) and result["models"] == 2


def test_on_the_pinn_both_models_train_with_lbfgs_and_improve(pinn_cell):
    calls = []
    fit = pinn_cell.fit

    def spy(model, steps, lr, **options):
        calls.append((steps, lr, options["optimizer"]))
        return fit(model, steps, lr, **options)

    pinn_cell.fit = spy
    try:
        untrained = Finetune().run(pinn_cell, pinn_context(pinn_cell, target_load="5", steps="0"))
        calls.clear()
        trained = Finetune().run(pinn_cell, pinn_context(pinn_cell, target_load="5", steps="40"))
    finally:
        del pinn_cell.fit
    assert calls == [(40, 1.0, "lbfgs")] * 4  # auto: the zoo trains with L-BFGS; its default lr is 1
    assert trained["target_rel_l2"] < untrained["target_rel_l2"] - 0.1
    assert trained["scratch_rel_l2"] < untrained["scratch_rel_l2"] - 0.1


def test_lbfgs_fitting_trains_only_the_parameters_given(pinn_cell):
    model = pinn_cell.model(pinn_cell.model_ids[0])
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    loss = pinn_cell.fit(model, 20, 1.0, parameters=model[-1].parameters(), optimizer="lbfgs")
    changed = {name for name, p in model.named_parameters() if not torch.equal(p, before[name])}
    last = len(model) - 1
    assert changed == {f"{last}.weight", f"{last}.bias"}
    assert loss == pytest.approx(pinn_cell.data.loss(model, (pinn_cell.data.interior,))[0].item())
    assert not model.training
