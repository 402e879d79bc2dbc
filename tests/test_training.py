import json

import pytest
import torch

from conftest import write_spec
from zoobench.spec.grid import model_keys, model_spec
from zoobench.spec import AugmentationSpec, read_spec_file
from zoobench.store import Store
from zoobench.data import load_data
from zoobench.models import build_model
from zoobench.execution import Runtime
from zoobench.train import augment
from zoobench.train.loop import train_models


def train_model(spec, key, zoo):
    """One model trained on its own (the general, unfused path)."""
    return train_models(spec, [key], zoo, None, Runtime("cpu"), fused=False)[0]


def _train(tmp_path, home_name="home", **spec_kwargs):
    spec = read_spec_file(write_spec(tmp_path, **spec_kwargs))
    zoo = Store(tmp_path / home_name).zoo(spec)
    key = model_keys(spec)[0]
    with zoo.writing():
        outcome = train_model(spec, key, zoo)
    return spec, zoo, key, outcome


def test_training_is_deterministic_per_seed(tmp_path):
    _, zoo_a, key, _ = _train(tmp_path, "a")
    _, zoo_b, _, _ = _train(tmp_path, "b")
    state_a, state_b = zoo_a.load_state(key.id), zoo_b.load_state(key.id)
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)
    assert zoo_a.results()["test_loss"].tolist() == zoo_b.results()["test_loss"].tolist()


def test_different_seeds_give_different_models(tmp_path):
    spec = read_spec_file(write_spec(tmp_path))
    zoo = Store(tmp_path / "home").zoo(spec)
    first, second = model_keys(spec)[:2]
    assert first.seed != second.seed and first.cell == second.cell
    with zoo.writing():
        train_model(spec, first, zoo)
        train_model(spec, second, zoo)
    assert not torch.equal(zoo.load_state(first.id)["1.weight"], zoo.load_state(second.id)["1.weight"])


def test_results_checkpoints_and_schedule_follow_the_recipe(tmp_path):
    spec, zoo, key, outcome = _train(tmp_path, epochs=3)
    assert outcome.status == "ok"
    record = zoo.record(key.id)
    assert record.epochs == (0, 1, 3)  # checkpoint_epochs [0, 1] plus the last epoch
    frame = zoo.results()
    assert frame["epoch"].tolist() == [0, 1, 2, 3]  # epoch 0 evaluates the initialisation
    assert {"train_loss", "train_acc", "test_loss", "test_acc", "lr", "seconds", "diverged"} <= set(frame.columns)
    # OneCycle is stepped once per batch: after the last step it sits at max_lr / (25 * 1e4)
    assert frame["lr"].iloc[-1] == pytest.approx(spec.training.lr / 25 / 1e4, rel=1e-3)
    # the stored recipe rebuilds the same network, and the epoch-0 checkpoint is the initialisation
    params = zoo.params(key.id)
    assert params["recipe"] == model_spec(spec, key).recipe()
    model = build_model(params["recipe"])
    assert sum(p.numel() for p in model.parameters()) == 64 * 4 + 4 + 4 * 10 + 10
    assert not torch.equal(zoo.load_state(key.id, 0)["1.weight"], zoo.load_state(key.id, 3)["1.weight"])


def test_loaded_model_reproduces_the_logged_test_accuracy(tmp_path):
    spec, zoo, key, _ = _train(tmp_path)
    model = zoo.load_model(key.id)
    data = load_data(model_spec(spec, key).recipe())
    assert data.evaluate(model)["acc"] == pytest.approx(zoo.results()["test_acc"].iloc[-1])


def test_divergence_is_recorded_not_raised(tmp_path):
    spec, zoo, key, outcome = _train(tmp_path, lr=1e4, epochs=3)
    assert outcome.status == "diverged"
    record = zoo.record(key.id)
    assert record.status == "diverged"
    rows = [json.loads(line) for line in (record.path / "result.json").read_text().splitlines()]
    marker = json.loads((record.path / "done.json").read_text())
    assert rows[-1]["diverged"] is True and rows[-1]["train_loss"] is None
    assert [r["epoch"] for r in rows] == list(range(0, marker["diverged_epoch"] + 1))  # stopped right there
    assert 3 not in record.epochs  # no checkpoint of NaN weights
    with pytest.raises(Exception, match="diverged"):
        zoo.load_state(key.id, 3)


def test_augmentation_transforms_each_image_on_its_own():
    torch.manual_seed(0)
    batch = torch.arange(64, dtype=torch.uint8).reshape(1, 1, 8, 8).repeat(32, 1, 1, 1)
    flip = augment.build(AugmentationSpec(hflip=True), (8, 8))
    flipped = flip(batch)
    changed = [not torch.equal(a, b) for a, b in zip(flipped, batch)]
    assert 0 < sum(changed) < len(changed)  # a per-batch call would flip all or none
    assert all(torch.equal(a, b.flip(-1)) for a, b, c in zip(flipped, batch, changed) if c)
    crop = augment.build(AugmentationSpec(crop_padding=2, rotation_degrees=20), (8, 8))
    assert crop(batch).shape == batch.shape and crop(batch).dtype == torch.uint8
    assert len({tuple(image.flatten().tolist()) for image in crop(batch)}) > 16  # each its own crop and angle
    assert augment.build(AugmentationSpec(), (8, 8)) is None


@pytest.mark.parametrize("height, width", [(32, 32), (24, 40)])
def test_batched_crop_and_rotation_equal_torchvision_image_by_image(height, width):
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.v2 import functional as TF

    torch.manual_seed(0)
    batch = torch.randint(0, 256, (5, 3, height, width), dtype=torch.uint8)
    tops, lefts = torch.tensor([0, 1, 8, 3, 4]), torch.tensor([8, 0, 2, 7, 4])
    cropped = augment.crop(torch.nn.functional.pad(batch, (4,) * 4), tops, lefts, height, width)
    for image, top, left, ours in zip(batch, tops, lefts, cropped):
        assert torch.equal(ours, TF.crop(TF.pad(image, [4]), int(top), int(left), height, width))
    angles = torch.tensor([20.0, -13.7, 5.0, 0.0, -20.0])
    for image, angle, ours in zip(batch, angles, augment.rotate(batch, angles)):
        assert torch.equal(ours, TF.rotate(image, float(angle), interpolation=InterpolationMode.NEAREST))


def test_augmented_training_is_still_deterministic(tmp_path):
    path = write_spec(tmp_path)
    path.write_text(path.read_text().replace('dataset = "digits"', 'dataset = "digits"\n[data.augmentation]\n'
                                             'crop_padding = 1\nhflip = true'))
    spec = read_spec_file(path)
    assert spec.data.augmentation.enabled
    states = []
    for home in ("a", "b"):
        zoo = Store(tmp_path / home).zoo(spec)
        key = model_keys(spec)[0]
        with zoo.writing():
            train_model(spec, key, zoo)
        states.append(zoo.load_state(key.id))
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
