"""The phase rule: Yang et al.'s table, thresholds relative to what a zoo spans, and the paper's layout
on the paper's own published metrics."""

import math

import pandas as pd
import pytest

from conftest import write_spec
from zoobench.landscape.annotations import cell_table
from zoobench.landscape.phases import Rule, classify, loss_threshold, rule
from zoobench.spec import load_spec, read_spec_file
from zoobench.store import Store


@pytest.fixture
def spec(tmp_path):
    return read_spec_file(write_spec(tmp_path))


FIXED = Rule(0.2, 0.05, 0.9, {"train_loss": "t", "mc": "m", "cka": "c"})


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
def test_the_phase_table_of_yang_et_al(row, phase):
    got, reason = FIXED.label(row)
    assert got == phase
    if phase not in ("?", "diverged"):
        assert "0.2" in reason and "0.05" in reason  # the thresholds are shown with the label


def _cells(**columns):
    return pd.DataFrame(columns)


def test_thresholds_are_relative_to_the_zoo_so_units_and_estimators_do_not_move_labels(spec):
    mc = [-0.25, -0.2, -0.12, -0.01, 0.0, 0.02, 0.1, 0.15]
    cka = [0.70, 0.72, 0.75, 0.80, 0.85, 0.88, 0.90, 0.93]
    loss = [1.0, 0.8, 0.01, 0.01, 0.01, 0.01, 0.5, 0.9]
    fractions = classify(spec, _cells(train_loss=loss, mc=mc, cka=cka))[0]["phase"].tolist()
    # mc in points instead of fractions, and a CKA estimator that reads 0.05 higher: the same phases
    points = classify(spec, _cells(train_loss=loss, mc=[100 * v for v in mc], cka=[v + 0.05 for v in cka]))[0]
    assert points["phase"].tolist() == fractions == ["I", "I", "III", "IV-A", "IV-B", "IV-B", "II", "II"]
    measured = rule(spec, _cells(train_loss=loss, mc=mc, cka=cka))
    typical = pd.Series([abs(v) for v in mc]).quantile(0.9)
    assert measured.mc == pytest.approx(typical / 3)
    low, high = pd.Series(cka).quantile(0.1), pd.Series(cka).quantile(0.9)
    assert measured.cka == pytest.approx((low + high) / 2)
    assert "a third of the zoo's typical |mc|" in measured.summary()


def test_a_zoo_without_barriers_does_not_call_noise_a_barrier(spec):
    table = _cells(train_loss=[0.01] * 4, mc=[-0.001, 0.0, 0.001, -0.002], cka=[0.9] * 4)
    labelled, measured = classify(spec, table)
    assert measured.mc == 0.005 and set(labelled["phase"]) == {"IV-B"}  # half a point of error is the floor


def test_thresholds_come_from_the_spec_where_it_fixes_them(spec):
    assert loss_threshold(spec, [])[0] == pytest.approx(0.1 * math.log(10))
    assert loss_threshold(spec.with_overrides({"phases.train_loss": 0.5}), [])[0] == 0.5
    pinn = load_spec("convection_pinn")
    threshold, how = loss_threshold(pinn, [1e-6, 1e-2])
    assert threshold == pytest.approx(1e-4) and "geometric" in how
    fixed = spec.with_overrides({"phases.mc": 0.001, "phases.cka": 0.99})
    table = _cells(train_loss=[0.01, 0.01], mc=[-0.01, 0.0], cka=[0.95, 0.95])
    labelled, measured = classify(fixed, table)
    assert labelled["phase"].tolist() == ["III", "IV-A"] and measured.how["mc"] == "from the spec"


# The paper's layout (its Figure 3, described in issue 13 and ARCHITECTURE.md), as a table over the
# CIFAR-10 ResNet-18 grid: widths 2..256 (load) x batch sizes 8..1024 (temperature, hot = small). The
# description is a sketch of regions, not of their borders, so a cell on a border may take either
# region's label; a cell inside a region takes that region's label:
#   - Phase II "across the hot rows (small batch) of all but the narrowest nets": batch 8 and 16 at
#     widths >= 4. Batch 32 borders the middle rows.
#   - Phase I "at the smallest widths at every colder temperature": width 2 from batch 64 down; width
#     2 in the hot rows is the corner of I and II; width 4 borders III.
#   - Phase III "at small-to-middle widths (8-16) in the cold rows": batch 256-1024. In the middle rows
#     (64, 128) widths 8-16 lie between I, III and IV-B.
#   - IV-B "at wide nets (>= 32) at middle-to-cold temperatures": batch 64-512; batch 512 borders IV-A.
#   - IV-A "at wide nets in the coldest row": batch 1024, widths >= 32.
WIDTHS = (2, 4, 8, 16, 32, 64, 128, 256)
BATCHES = (8, 16, 32, 64, 128, 256, 512, 1024)


def described(width: int, batch: int) -> set[str]:
    if batch <= 16:
        return {"I", "II"} if width == 2 else {"II"}
    if batch == 32:
        return {"I", "II"} if width <= 4 else {"II", "III"} if width <= 16 else {"II", "IV-B"}
    if width == 2:
        return {"I"}
    if width == 4:
        return {"I", "III"}
    if width <= 16:
        return {"I", "III", "IV-B"} if batch <= 128 else {"III"}
    return {"IV-A"} if batch == 1024 else {"IV-A", "IV-B"} if batch == 512 else {"IV-B"}


# Where the published numbers themselves depart from the sketch (CIFAR-10 ResNet-18 at epoch 115;
# the figure the description comes from is the CIFAR-100 zoo's). mc in percentage points as published.
DISAGREEMENTS = {
    # CKA at the middle rows is as low as anywhere among well-trained nets (0.79-0.84, against
    # 0.89-0.94 at batch 256-512), so these cells read IV-A (seeds disagree), not IV-B.
    (64, 32): "IV-A", (128, 32): "IV-A", (256, 32): "IV-A",
    (32, 64): "IV-A", (64, 64): "IV-A", (128, 64): "IV-A", (16, 128): "IV-A", (128, 128): "IV-A",
    # one seed's train-loss spike (the reference README) leaves this cell with mc +9.7 points: one end
    # is under-trained, II
    (128, 256): "II",
    # width 16 at batch 256 is connected (mc -4.3 points) with CKA 0.86: IV-B, not III
    (16, 256): "IV-B",
    # the coldest row's wide nets keep barriers of 5-8 points, a third or more of the zoo's typical
    # barrier (16 points), and their CKA (0.79-0.89) is not low: III, and IV-B at width 256 (mc -4.7)
    (32, 1024): "III", (64, 1024): "III", (128, 1024): "III", (256, 1024): "IV-B",
}


@pytest.fixture(scope="module")
def references(tmp_path_factory):
    return Store(tmp_path_factory.mktemp("references"))


def test_the_paper_layout_on_the_published_cifar10_resnet18_metrics_cell_by_cell(references):
    spec = references.resolve("cifar10_r18@ptmz")
    labelled, _ = classify(spec, cell_table(references.zoo(spec)))
    got = {(int(r["load"]), int(r["temperature"])): r["phase"] for r in labelled.to_dict("records")}
    assert set(got) == {(w, b) for w in WIDTHS for b in BATCHES}
    departures = {cell: phase for cell, phase in got.items() if phase not in described(*cell)}
    assert departures == DISAGREEMENTS
    counts = pd.Series(got).value_counts().to_dict()
    assert counts == {"II": 22, "IV-B": 13, "III": 11, "IV-A": 9, "I": 9}


# tinyimagenet_r18 is left out: at epoch 90 its narrowest annotated nets (width 4) have barriers of
# 4-9 points, under a third of the zoo's typical barrier (27 points), and read II rather than I.
@pytest.mark.parametrize("name", ["cifar10_r50@ptmz", "cifar100_r50@ptmz", "svhn_r18@ptmz"])
def test_on_every_resnet_reference_hot_rows_are_underfitted_and_narrow_cold_nets_have_barriers(references, name):
    """The structure every ResNet zoo of the paper shares at its paper epoch: the hottest annotated row
    is II at widths >= 8, and the narrowest annotated width in the coldest row is behind a barrier (I or
    III); wide nets in a middle row are well trained and connected (IV) wherever the zoo trains them
    to a small loss."""
    spec = references.resolve(name)
    labelled, _ = classify(spec, cell_table(references.zoo(spec)))
    known = labelled[labelled["phase"] != "?"]
    hottest = known[known["temperature"] == known["temperature"].min()]
    assert set(hottest.loc[hottest["load"] >= 8, "phase"]) == {"II"}
    coldest = known[known["temperature"] == known["temperature"].max()]
    assert coldest.sort_values("load")["phase"].iloc[0] in {"I", "III"}
