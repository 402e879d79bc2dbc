"""WeightDataset: canonicalised weights of a permuted copy equal the original's and compute the same function;
a zoo and its wsl export give the same items; bad requests are refused in one line."""

from __future__ import annotations

import pytest
import torch

from zoobench.data import WeightDataset
from zoobench.errors import UsageError
from zoobench.models import build_model
from zoobench.models.permutation import apply_permutation, permutation_spec
from zoobench.store import Store
from zoobench.store.ptmz import import_zoo
from zoobench.wsl.export import export_weights

from test_ptmz import _trial

RECIPE = {"model": {"architecture": "resnet", "options": {"width": 2, "depth": 18}},
          "data": {"dataset": "cifar10", "options": {}}}


def test_canonicalised_weights_of_a_permuted_copy_equal_the_originals(tmp_path):
    torch.manual_seed(0)
    original, other = build_model(RECIPE).state_dict(), build_model(RECIPE).state_dict()
    spec = permutation_spec("resnet", original)
    generator = torch.Generator().manual_seed(1)
    permuted = apply_permutation(spec, {n: torch.randperm(k, generator=generator) for n, k in spec.sizes.items()},
                                 original)
    for seed, state in enumerate([original, permuted, other]):
        lines = [{"train_loss": 2.0, "test_acc": 0.1 * (seed + 1)}] * 3  # line i is epoch i; checkpoint at 2
        _trial(tmp_path / "ptmz", f"t{seed}", 2, 8, seed, state, lines)
    zoo_spec, _ = import_zoo(tmp_path / "ptmz", "r18", Store(tmp_path / "home"), show_progress=False)
    zoo = Store(tmp_path / "home").zoo(zoo_spec)

    raw = WeightDataset(zoo, flat=False)
    assert not torch.equal(raw[1][0]["conv1.weight"], raw[0][0]["conv1.weight"])  # the copy is permuted
    canonical = WeightDataset(zoo, flat=False, canonicalise=0)
    assert list(canonical.metrics.seed) == [0, 1, 2]
    for key, tensor in canonical[0][0].items():
        assert torch.equal(tensor, original[key]), key  # the reference stays as it is
        assert torch.equal(canonical[1][0][key], tensor), key  # the permuted copy comes back to it
    assert torch.allclose(canonical[2][1], torch.tensor([0.3]))
    model, aligned = build_model(RECIPE).eval(), build_model(RECIPE).eval()
    model.load_state_dict(other)
    aligned.load_state_dict(canonical[2][0])
    x = torch.randn(4, 3, 32, 32)
    assert any(not torch.equal(tensor, other[key]) for key, tensor in canonical[2][0].items())  # it was moved
    torch.testing.assert_close(aligned(x), model(x), rtol=1e-5, atol=1e-5)  # another model: same function
    flat = WeightDataset(zoo, canonicalise=0)[1][0]
    assert flat.shape == (sum(t.numel() for t in original.values()),)


def test_a_zoo_and_its_wsl_export_give_the_same_items(zoo_copy, tmp_path):
    spec, store = zoo_copy
    zoo = store.zoo(spec)
    export_weights(zoo, tmp_path / "out", "wsl", show_progress=False)
    for split, part in [(None, "train"), ("random", "train"), ("cross_load", "test")]:
        direct = WeightDataset(zoo, ["test_acc", "gap"], split=split, part=part, group="w16")
        exported = WeightDataset(tmp_path / "out", ["test_acc", "gap"], split=split, part=part, group="w16")
        assert len(direct) == len(exported) > 0
        assert list(direct.metrics.model_id) == list(exported.metrics.model_id)
        for i in range(len(direct)):
            assert torch.equal(direct[i][0], exported[i][0]) and torch.allclose(direct[i][1], exported[i][1])
    assert set(WeightDataset(zoo, split="cross_load", part="test", group="w16").metrics.load) == {16}
    assert len(WeightDataset(zoo, split="cross_load", part="test", group="w4")) == 0


def test_bad_requests_are_refused_in_one_line(zoo_copy, tmp_path):
    spec, store = zoo_copy
    zoo = store.zoo(spec)
    with pytest.raises(UsageError, match="several shape groups.*w4, w16"):
        WeightDataset(zoo)
    with pytest.raises(UsageError, match="unknown targets \\['accuracy'\\].*test_acc"):
        WeightDataset(zoo, ["accuracy"], group="w4")
    with pytest.raises(UsageError, match="unknown split 'iid'; this zoo has random"):
        WeightDataset(zoo, split="iid", group="w4")
    with pytest.raises(UsageError, match="not a complete zoobench export"):
        WeightDataset(tmp_path, group="w4")
