import math

import pytest

from conftest import write_spec
from zoobench.landscape.phases import label, loss_threshold
from zoobench.spec import load_spec, read_spec_file


@pytest.fixture
def spec(tmp_path):
    return read_spec_file(write_spec(tmp_path))


@pytest.mark.parametrize("row, phase", [
    ({"train_loss": 1.0, "mc": -0.2, "cka": 0.99}, "I"),
    ({"train_loss": 1.0, "mc": 0.2, "cka": 0.99}, "II"),
    ({"train_loss": 1.0, "mc": 0.0, "cka": None}, "II"),
    ({"train_loss": 0.01, "mc": -0.2, "cka": 0.99}, "III"),
    ({"train_loss": 0.01, "mc": 0.01, "cka": 0.5}, "IV-A"),
    ({"train_loss": 0.01, "mc": -0.01, "cka": 0.95}, "IV-B"),
    ({"train_loss": 0.01, "mc": 0.0, "cka": None}, "?"),
    ({"train_loss": 0.01, "mc": None, "cka": 0.95}, "?"),
    ({"train_loss": None, "mc": None, "cka": None, "diverged": 1}, "diverged"),
])
def test_the_phase_table_of_yang_et_al(spec, row, phase):
    got, reason = label(row, spec, threshold=0.2)
    assert got == phase
    if phase not in ("?", "diverged"):
        assert "0.2" in reason and f"{spec.phases.mc:g}" in reason  # the thresholds are shown with the label


def test_thresholds_come_from_the_spec_or_a_stated_default(spec):
    assert loss_threshold(spec, [])[0] == pytest.approx(0.1 * math.log(10))
    assert loss_threshold(spec.with_overrides({"phases.train_loss": 0.5}), [])[0] == 0.5
    pinn = load_spec("convection_pinn")
    threshold, how = loss_threshold(pinn, [1e-6, 1e-2, float("nan"), None])
    assert threshold == pytest.approx(1e-4) and "geometric" in how
    mc_strict = spec.with_overrides({"phases.mc": 0.001, "phases.cka": 0.99})
    assert label({"train_loss": 0.01, "mc": -0.01, "cka": 0.95}, mc_strict, 0.2)[0] == "III"
    assert label({"train_loss": 0.01, "mc": 0.0, "cka": 0.95}, mc_strict, 0.2)[0] == "IV-A"
