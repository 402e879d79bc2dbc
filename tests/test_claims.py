"""The paper's claims tested on a zoo: verdicts on cell tables built to hold, to fail and to say nothing;
not applicable where the data is missing; the command line on the tiny zoo and a reference zoo."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from conftest import QUIET, WIDTH_PLUGIN, zoobench_cli
from zoobench.reports import claims
from zoobench.reports.claim_statistics import AbsMean, Contrast, Quantity, TopShare
from zoobench.reports.claims import (CLAIMS, INCONCLUSIVE, NOT_APPLICABLE, NOT_REPRODUCED, REPRODUCED, Claim, assess,
                                     evaluate, resample, verdict)

PHASES = ("I", "II", "III", "IV-A", "IV-B")
CELLS_PER_PHASE = 8
CONTRASTS = [c for c in CLAIMS if isinstance(c.statistic, Contrast)]



def cell_table(values: dict[str, list[float]], column: str) -> pd.DataFrame:
    """One row per cell: cell id, phase, and `column` (phase -> the values of its cells)."""
    rows = [{"cell_id": f"{phase}-{i}", "phase": phase, column: v}
            for phase, found in values.items() for i, v in enumerate(found)]
    return pd.DataFrame(rows)


def synthetic(claim: Claim, effect: float, noise: float, seed: int = 0) -> pd.DataFrame:
    """Cells of every phase whose quantity is 0.5 + noise, plus `effect` on the claim's first group: the
    claim holds for an effect on its claimed side, fails for one on the other. The noise is centred per
    phase, so every phase mean is exact and the statistic is `effect` itself."""
    rng = np.random.default_rng(seed)
    statistic = claim.statistic
    name = statistic.quantity.name
    values = {}
    for phase in PHASES:
        z = rng.standard_normal(CELLS_PER_PHASE)
        values[phase] = (0.5 + (effect if phase in statistic.first else 0.0) + noise * (z - z.mean())).tolist()
    return cell_table(values, name)


def verdict_on(claim: Claim, table: pd.DataFrame) -> dict:
    """The claim's row when `table` is the zoo's cells (a claim about the zoo) or the method's results."""
    if claim.method is None:
        found = evaluate(table, {}, claims=[claim])
    else:
        results = table.drop(columns="phase").rename(columns={"cell_id": "unit"}).assign(status="ok")
        found = evaluate(table[["cell_id", "phase"]], {claim.method: results}, claims=[claim])
    return found.iloc[0].to_dict()


# ---- verdicts ---------------------------------------------------------------------------------------


def test_verdict_is_the_side_of_the_threshold_the_whole_interval_lies_on():
    assert verdict(0.1, 0.3, 0.0, ">") == REPRODUCED
    assert verdict(-0.3, -0.1, 0.0, ">") == NOT_REPRODUCED
    assert verdict(-0.1, 0.1, 0.0, ">") == INCONCLUSIVE
    assert verdict(-0.3, 0.0, 0.0, ">") == NOT_REPRODUCED  # touching the threshold is not the claimed side
    assert verdict(-0.3, -0.1, 0.0, "<") == REPRODUCED
    assert verdict(0.0, 0.2, 0.0, "<") == NOT_REPRODUCED
    assert verdict(0.005, 0.02, 0.01, "<") == INCONCLUSIVE
    assert verdict(math.nan, math.nan, 0.0, ">") == NOT_APPLICABLE


@pytest.mark.parametrize("claim", CONTRASTS, ids=[c.id for c in CONTRASTS])
def test_every_contrast_claim_is_reproduced_flipped_refuted_and_swamped_inconclusive(claim):
    side = 1.0 if claim.direction == ">" else -1.0
    held = verdict_on(claim, synthetic(claim, 0.3 * side, noise=0.02))
    assert held["verdict"] == REPRODUCED and held["ci_low"] <= held["value"] <= held["ci_high"], held
    assert held["value"] == pytest.approx(0.3 * side)
    assert verdict_on(claim, synthetic(claim, -0.3 * side, noise=0.02))["verdict"] == NOT_REPRODUCED
    swamped = verdict_on(claim, synthetic(claim, 0.02 * side, noise=0.3))
    assert swamped["verdict"] == INCONCLUSIVE and swamped["value"] == pytest.approx(0.02 * side), swamped
    assert swamped["cells"] == sum(p in claim.statistic.first + claim.statistic.second for p in PHASES) * \
        CELLS_PER_PHASE


def test_top_decile_in_the_low_loss_region():
    claim = next(c for c in CLAIMS if isinstance(c.statistic, TopShare))
    rng = np.random.default_rng(1)
    accuracy = rng.uniform(0.2, 0.9, 40)
    low = pd.DataFrame({"cell_id": [f"c{i}" for i in range(40)], "phase": ["IV-B"] * 20 + ["I"] * 20,
                        "test_acc": np.sort(accuracy)[::-1], "train_loss": [0.01] * 20 + [2.0] * 20})
    assert assess(claim, low, loss_threshold=0.23)["verdict"] == REPRODUCED
    high = low.assign(train_loss=[2.0] * 20 + [0.01] * 20)  # the best cells are the high-loss ones
    row = assess(claim, high, loss_threshold=0.23)
    assert row["verdict"] == NOT_REPRODUCED and row["value"] == 0.0 and row["groups"] == "top 4, all 40"
    assert "threshold" in assess(claim, low)["reason"]  # without a train-loss threshold: not applicable


@pytest.mark.parametrize("claim", [c for c in CLAIMS if c.without_accuracy is not None], ids=lambda c: c.id)
def test_a_task_without_accuracy_tests_the_claim_on_its_error(claim):
    """The PINN reports relative L2 errors: the claims on accuracy read 1 - error (or the lowest errors)."""
    form = claim.without_accuracy
    column = form.columns[0]
    if isinstance(form, TopShare):
        errors = np.linspace(0.01, 1.0, 40)  # the lowest errors are the low-loss cells
        table = pd.DataFrame({"cell_id": [f"c{i}" for i in range(40)], "phase": ["IV-B"] * 20 + ["I"] * 20,
                              column: errors, "train_loss": [0.01] * 20 + [2.0] * 20})
        row = assess(claim, table, loss_threshold=0.23)
        assert row["verdict"] == REPRODUCED and "lowest test_rel_l2" in row["statistic"], row
        row = assess(claim, table.assign(**{column: errors[::-1]}), loss_threshold=0.23)
        assert row["verdict"] == NOT_REPRODUCED, row
        return
    first = form.first
    lower = cell_table({p: [0.2 if p in first else 0.8] * CELLS_PER_PHASE for p in PHASES}, column)
    row = verdict_on(claim, lower)  # the claimed phases have the lower error: the claim holds
    assert row["verdict"] == REPRODUCED and row["value"] == pytest.approx(0.6), row
    assert f"(1 - {column})" in row["statistic"]
    higher = lower.assign(**{column: 1.0 - lower[column]})
    assert verdict_on(claim, higher)["verdict"] == NOT_REPRODUCED
    both = lower.assign(**{claim.statistic.columns[0]: 0.5})  # accuracy present: the claim as stated
    assert verdict_on(claim, both)["statistic"] == claim.statistic.describe()


def test_an_effect_near_zero_is_small_and_a_large_one_is_not():
    claim = next(c for c in CLAIMS if isinstance(c.statistic, AbsMean))
    rng = np.random.default_rng(2)
    near = cell_table({"IV-A": (0.001 * rng.standard_normal(6)).tolist(), "IV-B": [0.0] * 6, "I": [0.1] * 4}, "gain")
    assert verdict_on(claim, near)["verdict"] == REPRODUCED
    far = near.assign(gain=near["gain"] + 0.05)
    assert verdict_on(claim, far)["verdict"] == NOT_REPRODUCED


def test_the_bootstrap_is_seeded_and_keeps_every_phase_count():
    claim = CONTRASTS[0]
    table = synthetic(claim, 0.05, noise=0.1)
    first, again = verdict_on(claim, table), verdict_on(claim, table)
    assert (first["ci_low"], first["ci_high"]) == (again["ci_low"], again["ci_high"])
    phase = table["phase"].to_numpy(dtype=object)
    index = resample(phase, resamples=50, seed=3)
    assert (phase[index] == phase).all()  # every resampled cell comes from its own phase
    assert not (index == np.arange(len(phase))).all()


# ---- not applicable ---------------------------------------------------------------------------------


def test_missing_method_phase_or_number_is_not_applicable_with_a_reason():
    cells = cell_table({"I": [0.2, 0.3], "III": [0.5, 0.6]}, "test_acc")
    table = evaluate(cells, {"ensemble": "no stored results of ensemble (config x)"})
    by_id = table.set_index("id")
    assert list(table["id"]) == [c.id for c in CLAIMS]
    methods = [c.id for c in CLAIMS if c.method]
    assert (by_id.loc[methods, "verdict"] == NOT_APPLICABLE).all()
    assert by_id.loc["d", "reason"] == "no stored results of ensemble (config x)"
    assert by_id.loc["b", "reason"] == "no stored results of finetune"  # a method not given at all
    assert by_id.loc["a1", "reason"].startswith("no IV-B cell (2 needed); phases: I 2, III 2")
    assert by_id.loc["a3", "reason"] == "the zoo's annotations report no train_loss"
    assert math.isnan(by_id.loc["a1", "value"])
    one = cell_table({"IV-B": [0.9], "I": [0.2, 0.3]}, "test_acc")
    assert evaluate(one, {}, claims=CLAIMS[:1]).iloc[0]["reason"].startswith("only 1 IV-B cell")
    results = pd.DataFrame({"unit": ["I-0", "IV-B-0"], "status": ["ok", "ok"], "loss_gain": [0.1, 0.2]})
    pinn = evaluate(one, {"ensemble": results}, claims=[c for c in CLAIMS if c.id == "d"])
    assert pinn.iloc[0]["reason"] == "ensemble's results report no gain"  # a task without accuracy


def test_failed_units_and_unlabelled_cells_take_no_part():
    claim = next(c for c in CLAIMS if c.id == "b")
    table = synthetic(claim, 0.3, noise=0.02)
    results = table.drop(columns="phase").rename(columns={"cell_id": "unit"}).assign(status="ok")
    results.loc[0, "status"] = "failed"
    cells = table[["cell_id", "phase"]].copy()
    cells.loc[1, "phase"] = "?"
    row = evaluate(cells, {"finetune": results}, claims=[claim]).iloc[0]
    assert row["cells"] == len(PHASES) * CELLS_PER_PHASE - 2 and row["verdict"] == REPRODUCED


def test_a_new_claim_is_one_entry():
    mine = Claim("z", "-", "wide cells are wide", Contrast(Quantity("width"), ("IV-B",), ("I",)), method="width")
    cells = cell_table({"I": [0.0, 0.0, 0.0], "IV-B": [0.0, 0.0, 0.0]}, "test_acc")
    results = pd.DataFrame({"unit": cells["cell_id"], "status": "ok", "width": [4, 4, 4, 16, 16, 16]})
    row = evaluate(cells, {"width": results}, claims=[mine]).iloc[0]
    assert (row["value"], row["ci_low"], row["ci_high"], row["verdict"]) == (12.0, 12.0, 12.0, REPRODUCED)
    assert row["statistic"] == "mean width: IV-B - I"


# ---- on stored zoos and the command line --------------------------------------------------------------


@pytest.fixture
def counted(zoo_copy, tmp_path):
    """(spec, store, plugin): the tiny zoo with the results of a plugin method (no built-in method run)."""
    from zoobench.bench.runner import run

    spec, store = zoo_copy
    plugin = tmp_path / "width.py"
    plugin.write_text(WIDTH_PLUGIN)
    assert not run("width", spec, store, plugins=[str(plugin)], generate_missing=False, execution=QUIET).failed
    return spec, store, str(plugin)


def test_claims_on_a_stored_zoo_read_its_annotations_and_method_results(counted):
    from zoobench.landscape.phases import phase_table

    spec, store, plugin = counted
    found = claims.check_claims(spec, store)
    assert list(found.table["id"]) == [c.id for c in CLAIMS] and found.methods == {}
    methods = found.table[found.table["method"] != ""]
    assert (methods["verdict"] == NOT_APPLICABLE).all()
    assert methods["reason"].str.startswith("no stored results of ").all()
    assert methods["reason"].str.endswith(f"--zoo {spec.name}` first").all()
    # a claim on any method's stored results is one more entry
    labelled = tuple(p for p in PHASES if p in set(phase_table(store.zoo(spec))["phase"]))
    mine = Claim("z", "-", "cells have a width", AbsMean(Quantity("width"), labelled), method="width",
                 threshold=1.0)
    report = claims.check_claims(spec, store, plugins=[plugin], claims=[mine])
    row = report.table.iloc[0]
    assert row["verdict"] == REPRODUCED and row["ci_low"] >= 4, row.to_dict()  # widths 4 and 16
    assert list(report.methods) == ["width"] and report.fingerprint == spec.fingerprint
    assert claims.render(found, "csv").splitlines()[0] == ",".join(claims.COLUMNS)
    data = json.loads(claims.render(found, "json"))
    assert data["fingerprint"] == spec.fingerprint and [c["id"] for c in data["claims"]] == [c.id for c in CLAIMS]


def test_cli_on_the_tiny_zoo(zoo_copy):
    spec, store = zoo_copy
    shown = zoobench_cli("claims", "--zoo", spec.name, home=store.home, env={"COLUMNS": "80"})
    assert shown.returncode == 0, shown.stderr
    assert max(len(line) for line in shown.stdout.splitlines()) <= 80
    assert "claim" in shown.stdout and "95% CI" in shown.stdout and "not applicable" in shown.stdout
    assert shown.stdout.rstrip().endswith(" not applicable")  # the verdict counts close the table
    md = zoobench_cli("claims", "--zoo", spec.name, "--format", "md", home=store.home)
    assert md.returncode == 0, md.stderr
    assert md.stdout.startswith(f"# Paper claims on {spec.name}") and "| claim | section |" in md.stdout
    assert md.stdout == claims.render(claims.check_claims(spec, store), "markdown")  # the CLI prints the API's text
    bad = zoobench_cli("claims", "--zoo", spec.name, "--format", "xml", home=store.home)
    assert bad.returncode == 2 and bad.stderr.strip() == "error: unknown format 'xml'; valid: table, csv, json, md"


def test_publish_and_the_report_carry_the_claims(counted, tmp_path):
    from zoobench.reports.html_report import write_report
    from zoobench.reports.leaderboard import publish

    spec, store, plugin = counted
    folders = [tmp_path / "one", tmp_path / "two"]
    for out in folders:
        publish(spec, store, ["width"], out, plugins=[plugin])
    written = pd.read_csv(folders[0] / spec.name / "claims.csv")
    assert list(written["id"]) == [c.id for c in CLAIMS]
    by_method = written[written["method"].notna()]
    assert (by_method["reason"] == by_method["method"] + " is not among the methods reported here").all()
    for name in ("claims.csv", "claims.md", "README.md"):
        path = name if name == "README.md" else f"{spec.name}/{name}"
        assert (folders[0] / path).read_bytes() == (folders[1] / path).read_bytes(), name
    index = (folders[0] / "README.md").read_text()
    assert f"[claims.md]({spec.name}/claims.md)" in index and "| claim | finding | value | 95% CI | verdict |" in index
    page = write_report(spec, tmp_path / "report.html", store, ["width"], plugins=[plugin]).read_text()
    assert "<h2 id=claims>Paper claims</h2>" in page and "finetune is not among the methods reported here" in page


def test_reference_zoo_gets_the_accuracy_claims_and_not_applicable_for_the_methods(tmp_path):
    result = zoobench_cli("claims", "--zoo", "cifar10_r18@ptmz", "--format", "json", home=tmp_path / "home")
    assert result.returncode == 0, result.stderr
    rows = {row["id"]: row for row in json.loads(result.stdout)["claims"]}
    # the paper's Section 4.1 on its own published metrics (epoch 115): IV-B is above the other phases and
    # the best cells train to a low loss; IV-B against the best other phase (IV-A) is within the noise
    assert rows["a1"]["verdict"] == REPRODUCED and rows["a1"]["ci_low"] > 0.05
    assert rows["a2"]["verdict"] == INCONCLUSIVE and rows["a2"]["ci_low"] < 0 < rows["a2"]["ci_high"]
    assert rows["a3"]["verdict"] == REPRODUCED and rows["a3"]["value"] == 1
    for claim in CLAIMS:
        if claim.method:
            assert rows[claim.id]["verdict"] == NOT_APPLICABLE
            assert rows[claim.id]["reason"] == (f"cifar10_r18@ptmz holds published metrics only (no weights): "
                                                f"{claim.method} cannot run on it")
    table = zoobench_cli("claims", "--zoo", "cifar10_r18@ptmz", home=tmp_path / "home", env={"COLUMNS": "80"})
    assert table.returncode == 0 and max(len(line) for line in table.stdout.splitlines()) <= 80


def test_unknown_zoo_is_a_one_line_usage_error(tmp_path):
    result = zoobench_cli("claims", "--zoo", "cifar11_r18", home=tmp_path / "home")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: unknown zoo 'cifar11_r18'; did you mean 'cifar10_r18'")
    assert "digits_mlp" in lines[0]
