"""Every registered method, run through the runner on the 2 x 2 tiny zoo, follows the same contract.

Parametrized over the registry itself: a method added to the entry points is checked the day it
is added. The no-op plugin is the test double that proves the contract test itself can pass.
"""

import math

import pytest

from test_plugins import NOOP
from zoobench.bench.plugins import discover
from zoobench.bench.runner import run
from conftest import QUIET

METHODS = discover([NOOP]).names()
SETTINGS = {"epochavg": {"last": "3"}}  # the tiny zoo trains 3 epochs; the paper's protocol averages 5


@pytest.mark.parametrize("name", METHODS)
def test_method_runs_on_every_cell_and_reports_its_headline(name, zoo_copy):
    spec, store = zoo_copy
    method = discover([NOOP]).get(name)
    settings = SETTINGS.get(name, {})
    report = run(name, spec, store, settings=settings, plugins=[NOOP], generate_missing=False, execution=QUIET)
    assert report.failed == {}
    table = report.table()
    units = method().units(method.Config()) if method.scope == "zoo" else ["w16-bs128", "w16-bs64", "w4-bs128",
                                                                            "w4-bs64"]
    assert sorted(table["unit"]) == sorted(units)
    assert method.headline in table, f"{name} never returned its headline '{method.headline}'"
    values = table[method.headline].tolist()
    assert all(isinstance(v, float) and math.isfinite(v) for v in values), values
    rerun = run(name, spec, store, settings=settings, plugins=[NOOP], generate_missing=False, execution=QUIET)
    assert (rerun.ran, rerun.current) == (0, len(units))


def test_builtin_methods_import_nothing_from_zoobench_but_the_plugin_api():
    """Built-in methods are written exactly as a third-party plugin would be: `zoobench.method` is all
    they use of zoobench (besides their own helper modules)."""
    import ast
    from pathlib import Path

    outside = []
    for path in sorted((Path(__file__).parents[1] / "methods").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
            outside += [f"{path.name}: {name}" for name in names if name.split(".")[0] == "zoobench"
                        and name != "zoobench.method" and not name.startswith("zoobench.methods.")]
    assert outside == []
