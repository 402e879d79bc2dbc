"""Finding methods: entry points of installed packages, --plugin files and modules, ZOOBENCH_PLUGINS."""

import subprocess
import sys
from pathlib import Path

import pytest

from zoobench.errors import UsageError, ZoobenchError
from zoobench.method import Method, contract_problems, make_config
from zoobench.bench.plugins import discover
from conftest import QUIET

PLUGINS = Path(__file__).parent / "plugins"
NOOP = str(PLUGINS / "noop.py")
BUILTIN = {"ensemble", "epochavg", "finetune", "probe", "prune", "rebasin"}


def install_example(target: Path) -> Path:
    """Install the example plugin package with pip, as a user would (offline, into `target`)."""
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index",
                    "--target", str(target), str(PLUGINS / "example_package")], check=True, capture_output=True,
                   cwd=target.parent)
    return target


@pytest.fixture
def installed_example(tmp_path, monkeypatch):
    target = install_example(tmp_path / "site")
    monkeypatch.syspath_prepend(str(target))
    yield target
    sys.modules.pop("zoobench_example", None)


def test_builtin_methods_come_from_entry_points_and_follow_the_contract():
    found = discover()
    assert BUILTIN <= set(found.names())
    for name in BUILTIN:
        assert found.origin(name).startswith("zoobench ")
        assert contract_problems(found.get(name)) == []


def test_a_plugin_file_is_loaded_and_its_origin_is_the_file():
    found = discover([NOOP])
    assert found.get("noop").name == "noop"
    assert found.origin("noop") == NOOP


def test_the_environment_variable_adds_plugins(monkeypatch):
    monkeypatch.setenv("ZOOBENCH_PLUGINS", NOOP)
    assert "noop" in discover().names()


def test_an_installed_package_registers_through_its_entry_point(installed_example):
    found = discover()
    assert found.get("weightnorm").version == "2"
    assert found.origin("weightnorm").startswith("zoobench-example 0.3.0")


def test_two_plugins_claiming_one_name_is_an_error_naming_both(tmp_path):
    clash = tmp_path / "clash.py"
    clash.write_text((PLUGINS / "noop.py").read_text())
    with pytest.raises(ZoobenchError, match=r"method 'noop' is registered twice: by .*noop\.py and by .*clash\.py"):
        discover([NOOP, str(clash)])


def test_the_same_plugin_given_twice_is_loaded_once(monkeypatch):
    monkeypatch.setenv("ZOOBENCH_PLUGINS", NOOP)
    assert discover([NOOP]).names().count("noop") == 1


def test_a_plugin_that_fails_to_import_is_reported_and_skipped(tmp_path):
    broken = tmp_path / "broken.py"
    broken.write_text("import not_a_module_anywhere\n")
    found = discover([str(broken), NOOP])
    assert "noop" in found.names() and BUILTIN <= set(found.names())
    errors = {b.origin: b.error for b in found.broken}
    assert "No module named 'not_a_module_anywhere'" in errors[str(broken)]
    with pytest.raises(UsageError, match="unknown method 'broken'.*failed to load: .*broken.py"):
        found.get("broken")


def test_a_class_breaking_the_contract_is_reported(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from dataclasses import dataclass\nfrom zoobench.method import Method\n"
                   "class Bad(Method):\n    name = 'bad method'\n    headline = ''\n"
                   "    scope = 'zoo'\n    spec_fields = ('transfer_target',)\n"
                   "    @dataclass(frozen=True)\n    class Config:\n        steps: int\n")
    found = discover([str(bad)])
    assert "bad method" not in found.names()
    error = {b.origin: b.error for b in found.broken}[str(bad)]
    for problem in ("'headline' must be a non-empty string", "letters, digits and underscores",
                    "every field of 'Config' needs a default", "'run' is not implemented",
                    "scope 'zoo' must define units(config)", "'spec_fields' must be a tuple of spec fields"):
        assert problem in error


def test_a_missing_plugin_file_is_a_usage_error():
    with pytest.raises(UsageError, match="plugin file nowhere/x.py does not exist"):
        discover(["nowhere/x.py"])


def test_unknown_method_suggests_close_names():
    with pytest.raises(UsageError, match=r"unknown method 'rebasn'; did you mean 'rebasin'\?.*valid: ensemble, "):
        discover().get("rebasn")


def test_config_from_set_values_is_typed_and_checked():
    noop = discover([NOOP]).get("noop")
    assert make_config(noop, {"offset": "2", "fail_on": "w4-bs64"}) == noop.Config(fail_on="w4-bs64", offset=2.0)
    with pytest.raises(UsageError, match="method noop has no option .ofset.; valid: fail_on, offset, no_headline"):
        make_config(noop, {"ofset": "1"})
    with pytest.raises(UsageError, match="--set offset=abc: method noop expects a number"):
        make_config(noop, {"offset": "abc"})


def test_method_base_class_is_not_a_method():
    assert contract_problems(Method) == ["'name' must be a non-empty string", "'headline' must be a non-empty string",
                                         "'run' is not implemented"]


def test_the_readme_plugin_example_is_a_working_plugin(tmp_path, zoo_copy):
    from zoobench.bench.runner import run

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    example = readme.split("```python\n# weightnorm.py\n")[1].split("```")[0]
    path = tmp_path / "weightnorm.py"
    path.write_text(example)
    spec, store = zoo_copy
    report = run("weightnorm", spec, store, settings={"power": "1"}, plugins=[str(path)], generate_missing=False,
                 execution=QUIET)
    table = report.table()
    assert report.failed == {} and len(table) == 4 and (table["weight_norm"] > 0).all()


def test_the_spec_fields_a_method_reads_key_its_results():
    """A transfer target lies outside the zoo's fingerprint: finetune's results must change key with it, and
    the methods that do not read it keep theirs."""
    from zoobench.bench.results import MethodResults
    from zoobench.spec import load_spec
    from zoobench.store import Store

    found = discover()
    spec = load_spec("digits_mlp")
    other = spec.with_overrides({"data.transfer_target": "stl10"})
    assert other.fingerprint == spec.fingerprint

    def key(name, zoo_spec):
        method = found.get(name)
        return MethodResults(Store("/nonexistent").zoo(zoo_spec), method, make_config(method), 15).config_hash

    assert key("finetune", spec) != key("finetune", other)
    assert key("ensemble", spec) == key("ensemble", other)
