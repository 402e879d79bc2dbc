"""Every shipped zoo trains: a one-epoch micro version of each, on data fabricated in the real formats.

The micro zoo keeps the spec's architecture family, dataset, optimizer, schedule, augmentation and
grid axes, and shrinks only what makes a test slow (epochs, steps, GPT-2's depth and block size).
"""

import math

import pytest

from fabricate import fabricate
from zoobench.train.generate import generate
from zoobench.spec.grid import model_keys
from zoobench.spec import list_specs
from zoobench.store import Store
from zoobench.models import build_model
from zoobench.execution import Execution

MICRO = {"training.epochs": 1, "training.checkpoint_epochs": [0], "evaluation.epoch": 1}
GPT2 = {"model.layers": 2, "data.block_size": 16, "training.steps_per_epoch": 2}
SHRINK = {"owt_gpt2": GPT2, "owt_gpt2_short": GPT2,
          "convection_pinn": {"training.steps_per_epoch": 1}}


@pytest.mark.parametrize("spec", list_specs(), ids=lambda s: s.name)
def test_every_zoo_trains_a_micro_cell(spec, tmp_path):
    micro = spec.with_overrides({**MICRO, **SHRINK.get(spec.name, {})})
    data_root = tmp_path / "data"
    for dataset in {micro.data.dataset, micro.data.transfer_target} - {None, "digits", "digits_shifted", "convection"}:
        fabricate(dataset, data_root)
    load, temperature = micro.grid.load.values[0], micro.grid.temperature.values[0]
    store = Store(tmp_path / "home")
    report = generate(micro, store, loads=[load], temperatures=[temperature], seeds=micro.grid.seeds[:1],
                      execution=Execution(workers=1, data_root=data_root, progress=False))
    assert report.trained == [model_keys(micro, [load], [temperature], micro.grid.seeds[:1])[0].id], report
    zoo = store.zoo(micro)
    record = zoo.models()[0]
    assert record.epochs == (0, 1)
    rows = zoo.results()
    assert rows["epoch"].tolist() == [0, 1] and all(math.isfinite(v) for v in rows["test_loss"])
    model = zoo.load_model(record.id)
    fresh = build_model(zoo.params(record.id)["recipe"])
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in fresh.parameters())
