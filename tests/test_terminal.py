"""What the command line prints reads in an 80-column terminal: nothing a user must type is cut, no
value is folded over lines, and tables fit."""

import re

import pytest

from conftest import zoobench_cli
from zoobench.spec import builtin_spec_paths

NARROW = {"COLUMNS": "80"}
PHASE_ROW = re.compile(r"^(I|II|III|IV-A|IV-B|diverged|\?|all) +\d+ +\d+ +\S+ ± \S+ +\[\S+, \S+\] *$")


def overlong(text: str, width: int = 80) -> list[str]:
    """Lines wider than the terminal that could have been wrapped (a single path longer than a line
    cannot, and is printed whole)."""
    return [line for line in text.splitlines() if len(line) > width and " " in line.strip()]


def test_zoo_list_shows_every_zoo_name_whole(home):
    result = zoobench_cli("zoo", "list", home=home, env=NARROW)
    assert result.returncode == 0, result.stderr
    first_words = {line.split()[0] for line in result.stdout.splitlines() if line.strip()}
    assert set(builtin_spec_paths()) <= first_words
    assert "…" not in result.stdout and overlong(result.stdout) == []


@pytest.mark.parametrize("method, names", [
    ("rebasin", ["merged_acc", "member_acc", "gain", "barrier_aligned"]),
    ("prune", ["max_sparsity", "dense_acc", "acc_s0.5", "acc_s0.9"]),
    ("probe", ["r2_mean", "tau_mean", "gbt_r2_mean", "random0", "random4", "phase_bacc", "cross_phase",
               "cross_load"])])
def test_the_run_summary_fits_80_columns_with_names_whole(zoo_copy, method, names):
    spec, store = zoo_copy
    result = zoobench_cli("run", "--method", method, "--zoo", spec.source, "--no-generate", "--workers", "1",
                          home=store.home, env=NARROW)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "…" not in out and overlong(out) == [], out
    words = set(out.split())
    assert set(names) <= words, out
    if method != "probe":  # per phase: the headline's mean ± std and its CI on one line each
        rows = [line for line in out.splitlines() if "±" in line and not line.startswith("phase")]
        assert rows and all(PHASE_ROW.match(row.strip()) for row in rows), rows
        assert str(store.zoo(spec).path / "results" / method) in out  # the results' folder, whole
