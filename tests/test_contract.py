"""Every registered method, run through the runner on the 2 x 2 tiny zoo, follows the same contract.

Parametrized over the registry itself: a method added to the entry points is checked the day it
is added. The no-op plugin is the test double that proves the contract test itself can pass.
"""

import math

import pytest

from test_plugins import NOOP
from zoobench.plugins import discover
from zoobench.runner import run

METHODS = discover([NOOP]).names()


@pytest.mark.parametrize("name", METHODS)
def test_method_runs_on_every_cell_and_reports_its_headline(name, zoo_copy):
    spec, store = zoo_copy
    method = discover([NOOP]).get(name)
    report = run(name, spec, store, plugins=[NOOP], generate_missing=False, workers=1, show_progress=False)
    assert report.failed == {}
    table = report.table()
    units = method().units(method.Config()) if method.scope == "zoo" else ["w16-bs128", "w16-bs64", "w4-bs128",
                                                                            "w4-bs64"]
    assert sorted(table["unit"]) == sorted(units)
    assert method.headline in table, f"{name} never returned its headline '{method.headline}'"
    values = table[method.headline].tolist()
    assert all(isinstance(v, float) and math.isfinite(v) for v in values), values
    rerun = run(name, spec, store, plugins=[NOOP], generate_missing=False, workers=1, show_progress=False)
    assert (rerun.ran, rerun.current) == (0, len(units))
