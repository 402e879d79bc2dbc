"""The architecture builders: exact parameter counts and key names against torchvision, shapes,
causality, and a build-forward-backward contract for every registered family."""

from __future__ import annotations

import pytest
import torch
import torchvision

from zoobench.models import ARCHITECTURES, gpt2, resnet, vit
from zoobench.data import DATASETS, DatasetInfo
from zoobench.errors import UsageError
from zoobench.registry import load_target

CIFAR10 = DATASETS.get("cifar10")
TINY_TEXT = DatasetInfo("tiny_text", "language_modeling", (16,), 101, "unused:load", "unused")
VIT = {"dim": 12, "depth": 2, "heads": 3, "patch_size": 4, "mlp_ratio": 2.0}
GPT = {"dim": 24, "layers": 2, "heads": 3, "dropout": 0.0}


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())  # counts a tied weight once


def build_resnet(width: int, depth: int, data: DatasetInfo = CIFAR10) -> torch.nn.Module:
    return resnet.build({"width": width, "depth": depth}, data, {})


def test_resnet18_width64_has_the_published_parameter_count():
    assert n_params(build_resnet(64, 18)) == 11_173_962


def test_resnet50_width64_is_torchvision_minus_the_stem_difference():
    reference = n_params(torchvision.models.resnet50(num_classes=10))
    assert n_params(build_resnet(64, 50)) == reference - 3 * 64 * (7 * 7 - 3 * 3)


@pytest.mark.parametrize("depth", [18, 50])
def test_resnet_state_dict_is_torchvision_s_except_the_stem(depth):
    reference = getattr(torchvision.models, f"resnet{depth}")(num_classes=10).state_dict()
    state = build_resnet(64, depth).state_dict()
    assert set(state) == set(reference)
    assert {k for k in state if state[k].shape != reference[k].shape} == {"conv1.weight"}
    assert state["conv1.weight"].shape == (64, 3, 3, 3)


def test_resnet_stage_widths_scale_with_width():
    model = build_resnet(8, 18)
    assert model.conv1.weight.shape == (8, 3, 3, 3)
    assert model.layer4[-1].conv2.out_channels == 64
    assert model.fc.in_features == 64
    assert build_resnet(8, 50).fc.in_features == 8 * 8 * 4


@pytest.mark.parametrize("depth", [18, 50])
def test_resnet_keeps_full_resolution_in_the_first_stage_and_halves_it_after(depth):
    model = build_resnet(4, depth).eval()
    sides = {}
    for name in ["layer1", "layer2", "layer3", "layer4"]:
        record = lambda module, inputs, out, name=name: sides.update({name: out.shape[-1]})  # noqa: E731
        getattr(model, name).register_forward_hook(record)
    assert model(torch.randn(2, 3, 16, 16)).shape == (2, 10)  # fully convolutional: any side works
    assert sides == {"layer1": 16, "layer2": 8, "layer3": 4, "layer4": 2}


def test_resnet_forward_on_tinyimagenet():
    tiny = DATASETS.get("tinyimagenet")
    assert build_resnet(4, 18, tiny).eval()(torch.randn(2, 3, 64, 64)).shape == (2, 200)


def test_vit_output_shape_and_smallest_grid_width():
    model = vit.build(VIT, CIFAR10, {}).eval()
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    smallest = vit.build({**VIT, "dim": 6}, CIFAR10, {}).eval()
    assert smallest(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_vit_rejects_dim_not_divisible_by_heads():
    with pytest.raises(UsageError, match="divisible"):
        vit.build({**VIT, "dim": 10}, CIFAR10, {})


def test_vit_rejects_patches_that_do_not_tile_the_image():
    with pytest.raises(UsageError, match="patch_size 5"):
        vit.build({**VIT, "patch_size": 5}, CIFAR10, {})


def test_vit_parameter_count_grows_with_dim():
    counts = [n_params(vit.build({**VIT, "dim": dim}, CIFAR10, {})) for dim in (6, 12, 24, 48)]
    assert counts == sorted(set(counts))


def tiny_gpt() -> torch.nn.Module:
    torch.manual_seed(0)
    return gpt2.build(GPT, TINY_TEXT, {"block_size": 16}).eval()


def test_gpt2_logits_shape():
    idx = torch.randint(0, 101, (2, 16))
    assert tiny_gpt()(idx).shape == (2, 16, 101)
    assert tiny_gpt()(idx[:, :5]).shape == (2, 5, 101)


def test_gpt2_is_causal():
    model = tiny_gpt()
    idx = torch.randint(0, 101, (1, 16))
    changed = idx.clone()
    changed[0, 9] = (idx[0, 9] + 1) % 101
    before, after = model(idx), model(changed)
    assert torch.allclose(before[:, :9], after[:, :9])
    assert not torch.allclose(before[:, 9:], after[:, 9:])


def test_gpt2_head_is_tied_to_token_embedding():
    model = tiny_gpt()
    assert model.lm_head.weight is model.wte.weight


def test_gpt2_init_scales_down_the_residual_projections():
    model = tiny_gpt()
    assert model.h[0].mlp.c_fc.weight.std().item() == pytest.approx(0.02, rel=0.1)
    # std 0.02 / sqrt(2 * layers) = 0.01 for 2 layers
    assert model.h[0].attn.c_proj.weight.std().item() == pytest.approx(0.01, rel=0.1)
    assert model.h[1].mlp.c_proj.weight.std().item() == pytest.approx(0.01, rel=0.1)


def test_gpt2_rejects_dim_not_divisible_by_heads():
    with pytest.raises(UsageError, match="divisible"):
        gpt2.build({**GPT, "dim": 25}, TINY_TEXT, {"block_size": 16})


# Per family: the default options at a small width, a dataset to build for, and its options.
SMALL_WIDTH = {
    "mlp": ({"width": 8}, DATASETS.get("digits"), {}),
    "resnet": ({"width": 2}, CIFAR10, {}),
    "vit": ({"dim": 6}, CIFAR10, {}),
    "gpt2": ({"dim": 24}, TINY_TEXT, {"block_size": 16}),
}


@pytest.mark.parametrize("name", ARCHITECTURES.names())
def test_every_architecture_builds_and_trains_one_step(name):
    info = ARCHITECTURES.get(name)
    assert name in SMALL_WIDTH, f"add a small configuration for architecture '{name}' to SMALL_WIDTH"
    overrides, data, data_options = SMALL_WIDTH[name]
    builder = load_target(info.builder, name)
    model = builder({**info.options, **overrides}, data, data_options)
    if data.task == "language_modeling":
        x = torch.randint(0, data.num_outputs, (2, data_options["block_size"]))
        loss = model(x).flatten(0, 1).logsumexp(-1).mean()
    else:
        loss = model(torch.randn(2, *data.input_shape)).logsumexp(-1).mean()
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None for p in model.parameters())
