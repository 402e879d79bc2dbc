"""Fused multi-seed training learns, per seed, what separate training learns."""

import json

import pytest
import torch

from conftest import write_spec
from zoobench.fused import StackedMLP, fusable
from zoobench.generate import generate
from zoobench.spec import load_spec
from zoobench.store import Store
from zoobench.training import build_model


def train_both(tmp_path, **spec_options):
    spec = load_spec(str(write_spec(tmp_path, **spec_options)))
    zoos = {}
    for fused in (False, True):
        store = Store(tmp_path / f"home-{fused}")
        generate(spec, store, workers=1, show_progress=False, fused=fused)
        zoos[fused] = store.zoo(spec)
    return spec, zoos[False], zoos[True]


def test_fused_seeds_equal_separately_trained_models(tmp_path):
    torch.use_deterministic_algorithms(True)
    try:
        spec, separate, fused = train_both(tmp_path, epochs=2, seeds=(0, 1, 2), widths=(4, 16), batch_sizes=(64,))
    finally:
        torch.use_deterministic_algorithms(False)
    assert [m.id for m in fused.models()] == [m.id for m in separate.models()]
    for record in separate.models():
        for epoch in record.epochs:
            alone, together = separate.load_state(record.id, epoch), fused.load_state(record.id, epoch)
            assert alone.keys() == together.keys()
            for name in alone:
                torch.testing.assert_close(together[name], alone[name], atol=2e-5, rtol=1e-4)
        rows = {key: [json.loads(line) for line in (zoo.models_dir / record.id / "result.json").read_text().splitlines()]
                for key, zoo in (("alone", separate), ("together", fused))}
        for a, b in zip(rows["alone"], rows["together"], strict=True):
            for column in ("train_loss", "test_loss", "train_acc", "test_acc", "lr"):
                assert b[column] == pytest.approx(a[column], abs=1e-4), (record.id, a["epoch"], column)
    marker = json.loads((fused.models_dir / "w4-bs64-s0" / "done.json").read_text())
    assert marker["fused_seeds"] == 3


def test_diverging_seeds_are_recorded_as_in_separate_training(tmp_path):
    spec, separate, fused = train_both(tmp_path, lr=1e4, epochs=2, seeds=(0, 1), widths=(8,), batch_sizes=(64,))
    for record in separate.models():
        assert fused.record(record.id).status == record.status == "diverged"
        assert fused.record(record.id).epochs == record.epochs


def test_stacked_mlp_computes_each_seeds_function():
    recipe = load_spec("digits_mlp").with_overrides({"model.width": 8}).recipe()
    models = []
    for seed in range(3):
        torch.manual_seed(seed)
        models.append(build_model(recipe).eval())
    stacked = StackedMLP(models)
    images = torch.randn(3, 5, 1, 8, 8)
    expected = torch.stack([model(x) for model, x in zip(models, images)])
    torch.testing.assert_close(stacked(images), expected, atol=1e-6, rtol=1e-5)
    for s, model in enumerate(models):
        assert stacked.state_dict_of(s).keys() == model.state_dict().keys()


@pytest.mark.parametrize("zoo, reason", [("cifar10_r18", "architecture resnet"), ("convection_pinn", "task pde"),
                                         ("digits_mlp", None)])
def test_fusable_says_why_not(zoo, reason):
    found = fusable(load_spec(zoo))
    assert (found is None) if reason is None else found.startswith(reason)


def test_evaluating_many_models_at_once_equals_one_by_one(tiny_zoo):
    from zoobench.cells import open_cells

    cell = open_cells(tiny_zoo)["w16-bs64"]
    models = cell.models() + cell.models(epoch=1)
    for split in ("train", "test"):
        together = cell.evaluate_many(models, split, stacked=True)
        for model, values in zip(models, together):
            alone = cell.evaluate(model, split)
            assert values["acc"] == alone["acc"] and values["loss"] == pytest.approx(alone["loss"], rel=1e-5)
    resnet = build_model(load_spec("cifar10_r18").with_overrides({"model.width": 2}).recipe())
    with pytest.raises(ValueError, match="has no stacked form"):
        StackedMLP([resnet])  # other families: evaluate_many falls back to one model at a time
