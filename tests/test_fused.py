"""Fused multi-seed training learns, per seed, what separate training learns."""

import json

import pytest
import torch

from conftest import QUIET, write_spec
from zoobench.execution import Execution
from fabricate import fabricate
from zoobench.train.fused import FusedModels, fusable
from zoobench.train.generate import generate
from zoobench.spec import load_spec
from zoobench.store import Store
from zoobench.models import build_model


def train_both(tmp_path, spec=None, data_root=None, **spec_options):
    spec = spec or load_spec(str(write_spec(tmp_path, **spec_options)))
    zoos = {}
    torch.use_deterministic_algorithms(True)
    try:
        for fused in (False, True):
            store = Store(tmp_path / f"home-{fused}")
            generate(spec, store, fused=fused, execution=Execution(workers=1, data_root=data_root, progress=False))
            zoos[fused] = store.zoo(spec)
    finally:
        torch.use_deterministic_algorithms(False)
    return spec, zoos[False], zoos[True]


def assert_same_models(separate, fused, atol=2e-5):
    assert [m.id for m in fused.models()] == [m.id for m in separate.models()]
    for record in separate.models():
        for epoch in record.epochs:
            alone, together = separate.load_state(record.id, epoch), fused.load_state(record.id, epoch)
            assert alone.keys() == together.keys()
            for name in alone:
                torch.testing.assert_close(together[name], alone[name], atol=atol, rtol=1e-4, msg=name)
        rows = {key: [json.loads(line) for line in (zoo.models_dir / record.id / "result.json").read_text().splitlines()]
                for key, zoo in (("alone", separate), ("together", fused))}
        for a, b in zip(rows["alone"], rows["together"], strict=True):
            for column in ("train_loss", "test_loss", "train_acc", "test_acc", "lr"):
                assert b[column] == pytest.approx(a[column], abs=1e-4), (record.id, a["epoch"], column)


def test_fused_seeds_equal_separately_trained_models(tmp_path):
    spec, separate, fused = train_both(tmp_path, epochs=2, seeds=(0, 1, 2), widths=(4, 16), batch_sizes=(64,))
    assert_same_models(separate, fused)
    marker = json.loads((fused.models_dir / "w4-bs64-s0" / "done.json").read_text())
    assert marker["fused_seeds"] == 3


def test_fused_seeds_clip_their_own_gradients_as_when_trained_alone(tmp_path):
    """At lr 0.5 and batch 8 the clip of 0.5 binds on most steps, with a different coefficient per seed:
    a clip on the fused network's global norm, or one coefficient for all seeds, would part the seeds
    from their separately trained selves within a step."""
    spec = load_spec(str(write_spec(tmp_path, epochs=1, seeds=(0, 1, 2), widths=(16,), batch_sizes=(8,))))
    spec = spec.with_overrides({"training.grad_clip": 0.5, "training.lr": 0.5})
    _, separate, fused = train_both(tmp_path, spec)
    assert_same_models(separate, fused)


def test_fused_resnets_with_augmentation_equal_separately_trained_ones(tmp_path):
    """Grouped convolutions, per-seed BatchNorm statistics and per-seed augmentation streams: each
    seed's weights and running averages are what it learns alone. (At the recipe's lr 0.1, width-2
    BatchNorm nets amplify float rounding chaotically within a few steps, so this runs at lr 0.002;
    a mismatched augmentation stream would still show at once in the running averages.)"""
    fabricate("cifar10", tmp_path / "data", n_train=48, n_test=16)
    spec = load_spec("cifar10_r18").with_overrides({
        "training.epochs": 2, "training.checkpoint_epochs": [0, 2], "evaluation.epoch": 2, "model.width": 2,
        "training.batch_size": 16, "training.lr": 0.002, "grid.load.values": [2], "grid.temperature.values": [16], "grid.seeds": [0, 1]})
    assert spec.data.augmentation.enabled and fusable(spec) is None
    spec, separate, fused = train_both(tmp_path, spec, data_root=tmp_path / "data")
    assert_same_models(separate, fused, atol=1e-4)
    assert json.loads((fused.models_dir / "w2-bs16-s1" / "done.json").read_text())["fused_seeds"] == 2


def test_a_cell_trained_seed_by_seed_equals_one_trained_at_once(tmp_path):
    spec = load_spec(str(write_spec(tmp_path, seeds=(0, 1, 2), widths=(8,), batch_sizes=(64,))))
    whole, parts = Store(tmp_path / "whole"), Store(tmp_path / "parts")
    generate(spec, whole, execution=QUIET)
    assert generate(spec, parts, seeds=[1], execution=QUIET).trained == ["w8-bs64-s1"]
    assert generate(spec, parts, execution=QUIET).trained == ["w8-bs64-s0", "w8-bs64-s2"]
    for record in whole.zoo(spec).models():
        at_once, in_parts = whole.zoo(spec).load_state(record.id), parts.zoo(spec).load_state(record.id)
        assert all(torch.equal(at_once[name], in_parts[name]) for name in at_once), record.id


def test_diverging_seeds_are_recorded_as_in_separate_training(tmp_path):
    spec, separate, fused = train_both(tmp_path, lr=1e4, epochs=2, seeds=(0, 1), widths=(8,), batch_sizes=(64,))
    for record in separate.models():
        assert fused.record(record.id).status == record.status == "diverged"
        assert fused.record(record.id).epochs == record.epochs


@pytest.mark.parametrize("zoo, width, shape", [("digits_mlp", 8, (1, 8, 8)), ("cifar10_r18", 2, (3, 32, 32)),
                                                ("cifar10_r50", 2, (3, 32, 32))])
def test_fused_models_compute_each_seeds_function(zoo, width, shape):
    recipe = load_spec(zoo).with_overrides({"model.width": width}).recipe()
    models = []
    for seed in range(3):
        torch.manual_seed(seed)
        models.append(build_model(recipe))
    for model in models:  # BatchNorm running averages that differ per seed
        model.train()(torch.randn(4, *shape))
        model.eval()
    fused = FusedModels(models).eval()
    images = torch.randn(3, 5, *shape)
    expected = torch.stack([model(x) for model, x in zip(models, images)])
    torch.testing.assert_close(fused(images.transpose(0, 1)), expected, atol=1e-5, rtol=1e-4)
    shared = torch.stack([model(images[0]) for model in models])
    torch.testing.assert_close(fused(images[0], shared=True), shared, atol=1e-5, rtol=1e-4)
    for s, model in enumerate(models):
        for name, value in model.state_dict().items():
            torch.testing.assert_close(fused.state_dict_of(s)[name], value, msg=name)


@pytest.mark.parametrize("zoo, overrides, device, reason", [
    ("cifar10_r18", {"model.width": 4}, "cpu", None),
    ("cifar10_r18", {"model.width": 16}, "cpu", "on CPU, grouped convolutions are slower"),
    ("cifar10_r18", {"model.width": 16}, "cuda", None),
    ("cifar10_vit", {}, "cpu", "ViT has no fused form"),
    ("convection_pinn", {}, "cpu", "task pde"),
    ("digits_mlp", {"model.width": 128}, "cpu", None),
    ("digits_mlp", {"training.grad_clip": 1.0}, "cpu", None)])
def test_fusable_says_why_not(zoo, overrides, device, reason):
    found = fusable(load_spec(zoo).with_overrides(overrides), device)
    assert (found is None) if reason is None else found.startswith(reason), found


def test_evaluating_many_models_at_once_equals_one_by_one(tiny_zoo):
    from zoobench.bench.cells import open_cells

    cell = open_cells(tiny_zoo)["w16-bs64"]
    models = cell.models() + cell.models(epoch=1)
    for split in ("train", "test"):
        together = cell.evaluate_many(models, split, stacked=True)
        for model, values in zip(models, together):
            alone = cell.evaluate(model, split)
            assert values["acc"] == alone["acc"] and values["loss"] == pytest.approx(alone["loss"], rel=1e-5)
    vit = build_model(load_spec("cifar10_vit").with_overrides({"model.dim": 6}).recipe())
    with pytest.raises(ValueError, match="has no fused form"):
        FusedModels([vit])  # other families: evaluate_many falls back to one model at a time
