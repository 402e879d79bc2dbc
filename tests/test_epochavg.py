"""The epochavg method is the paper's protocol: the uniform average of a model's checkpoints of the last
K epochs, BatchNorm re-estimated, against the model at the evaluation epoch; on the PINN its gain is
the reduction of the relative L2 error."""

from __future__ import annotations

import pytest
import torch

from conftest import QUIET, write_spec
from fabricate import fabricate
from zoobench.bench.cells import open_cells
from zoobench.errors import ZoobenchError
from zoobench.execution import Execution
from zoobench.landscape.weightspace import recalibrate_batchnorm
from zoobench.method import Context, make_config
from zoobench.methods.epochavg import EpochAverage
from zoobench.spec import load_spec, read_spec_file
from zoobench.store import Store
from zoobench.train.generate import generate


def _by_hand(cell, model_id, epochs, bn_batches=None):
    """The average built here, tensor by tensor, and its test metrics."""
    states = [cell.state(model_id, epoch) for epoch in epochs]
    average = {key: (sum(s[key] for s in states) / len(states) if states[-1][key].is_floating_point()
                     else states[0][key]) for key in states[-1]}
    model = cell.model(model_id)
    model.load_state_dict(average)
    if bn_batches is not None:
        recalibrate_batchnorm(model, cell.data.fixed_batches("train", bn_batches, 128, 0))
    return cell.evaluate(model)


def pinn_cells(folder, **overrides):
    """The cells of a tiny convection PINN zoo (beta 1, L-BFGS lr 1, 2 seeds, 3 short epochs, every epoch
    stored), trained into `folder`; also used by test_finetune."""
    spec = load_spec("convection_pinn").with_overrides({
        "model.width": 8, "model.depth": 2, "data.collocation_points": 50, "data.test_x": 64, "data.test_t": 20,
        "training.epochs": 3, "training.steps_per_epoch": 2, "training.checkpoint_epochs": [0, 1, 2],
        "evaluation.epoch": 3, "grid.load.values": [1.0], "grid.temperature.values": [1.0], "grid.seeds": [0, 123],
        **overrides})
    store = Store(folder / "home")
    generate(spec, store, execution=QUIET)
    return open_cells(store.zoo(spec))


@pytest.fixture(scope="module")
def digits_cell(tmp_path_factory):
    folder = tmp_path_factory.mktemp("epochavg")
    spec = read_spec_file(write_spec(folder, epochs=4, widths=(16,), batch_sizes=(64,), checkpoints=(0, 2, 3)))
    store = Store(folder / "home")
    generate(spec, store, execution=QUIET)
    return open_cells(store.zoo(spec))["w16-bs64"]


def test_the_average_is_the_uniform_average_of_the_last_k_checkpoints(digits_cell):
    ctx = Context(config=make_config(EpochAverage, {"last": "3"}), spec=digits_cell.spec)
    result = EpochAverage().run(digits_cell, ctx)
    assert (result["first_epoch"], result["epochs_averaged"]) == (2.0, 3.0)
    by_hand = [_by_hand(digits_cell, model_id, [2, 3, 4]) for model_id in digits_cell.model_ids]
    assert result["averaged_acc"] == pytest.approx(sum(r["acc"] for r in by_hand) / len(by_hand), abs=1e-12)
    finals = [digits_cell.evaluate(m)["acc"] for m in digits_cell.models()]
    assert result["final_acc"] == pytest.approx(sum(finals) / len(finals), abs=1e-12)
    assert result["gain"] == pytest.approx(result["averaged_acc"] - result["final_acc"])
    # an MLP has no BatchNorm: re-estimating it changes nothing, and the whole gain is the average's
    assert result["recalibrated_acc"] == result["final_acc"] and result["recalibration_gain"] == 0.0
    assert result["averaging_gain"] == result["gain"]


def test_missing_checkpoints_are_named(digits_cell):
    def average(last: str):
        EpochAverage().run(digits_cell, Context(config=make_config(EpochAverage, {"last": last}), spec=digits_cell.spec))

    with pytest.raises(ZoobenchError, match=r"epochs 1-4 needs their checkpoints.*add \[1\]"):
        average("4")
    with pytest.raises(ZoobenchError, match=r"epochs 0-4 needs.*add \[1\]"):
        average("5")  # the default, as published
    with pytest.raises(ZoobenchError, match="only 5 epochs"):
        average("6")


def test_batchnorm_is_re_estimated_on_the_average(tmp_path):
    spec = load_spec("cifar10_r18").with_overrides({
        "training.epochs": 3, "training.checkpoint_epochs": [0, 1, 2], "evaluation.epoch": 3,
        "grid.load.values": [2], "grid.temperature.values": [16], "grid.seeds": [0]})
    fabricate("cifar10", tmp_path / "data")
    store = Store(tmp_path / "home")
    generate(spec, store, execution=Execution(workers=1, data_root=tmp_path / "data", progress=False))
    cell = open_cells(store.zoo(spec), data_root=tmp_path / "data")["w2-bs16"]
    ctx = Context(config=make_config(EpochAverage, {"last": "3", "bn_batches": "4"}), spec=spec)
    result = EpochAverage().run(cell, ctx)
    model_id = cell.model_ids[0]
    assert result["averaged_loss"] == pytest.approx(_by_hand(cell, model_id, [1, 2, 3], bn_batches=4)["loss"])
    raw = _by_hand(cell, model_id, [1, 2, 3])  # running statistics averaged, not re-estimated
    assert raw["loss"] != pytest.approx(result["averaged_loss"])
    # the final model with its statistics re-estimated on the same batches: what recalibration alone gives
    assert result["recalibrated_loss"] == pytest.approx(_by_hand(cell, model_id, [3], bn_batches=4)["loss"])
    assert result["recalibrated_loss"] != pytest.approx(result["final_loss"])
    assert result["gain"] == pytest.approx(result["recalibration_gain"] + result["averaging_gain"])
    assert all(isinstance(v, float) for v in result.values()) and torch.isfinite(torch.tensor(result["gain"]))


def test_on_the_pinn_the_gain_is_the_reduction_of_the_relative_l2_error(tmp_path):
    cell = pinn_cells(tmp_path)["beta1-lr1"]
    result = EpochAverage().run(cell, Context(config=make_config(EpochAverage, {"last": "3"}), spec=cell.spec))
    assert "final_acc" not in result and "averaged_acc" not in result
    by_hand = [_by_hand(cell, model_id, [1, 2, 3])["rel_l2"] for model_id in cell.model_ids]  # no BatchNorm
    assert result["averaged_rel_l2"] == pytest.approx(sum(by_hand) / len(by_hand), rel=1e-6)
    assert result["gain"] == pytest.approx(result["final_rel_l2"] - result["averaged_rel_l2"])
    assert result["loss_gain"] == pytest.approx(result["final_loss"] - result["averaged_loss"])
