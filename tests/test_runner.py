"""`zoobench run`: results per cell, resumable, keyed by config, failures recorded per cell."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import QUIET, write_spec, zoobench_cli
from test_plugins import NOOP, install_example
from zoobench.errors import UsageError
from zoobench.bench.runner import load_results, run
from zoobench.spec import load_spec
from zoobench.store import Store


def noop(spec, store, **settings):
    return run("noop", spec, store, settings={k: str(v) for k, v in settings.items()}, plugins=[NOOP],
               generate_missing=False, execution=QUIET)


def test_results_are_stored_per_cell_with_phase_and_provenance(zoo_copy):
    spec, store = zoo_copy
    report = noop(spec, store)
    assert (report.ran, report.current, report.failed) == (4, 0, {})
    table = report.table().set_index("unit")
    assert sorted(table.index) == ["w16-bs128", "w16-bs64", "w4-bs128", "w4-bs64"]
    assert (table["models"] == 3).all() and (table["n_models"] == 3).all() and (table["status"] == "ok").all()
    assert set(table["phase"]) <= {"I", "II", "III", "IV-A", "IV-B"}
    assert report.results.folder.parent == store.zoo(spec).path / "results" / "noop"
    provenance = json.loads((report.results.folder / "run.json").read_text())
    assert provenance["fingerprint"] == spec.fingerprint and provenance["origin"] == NOOP
    assert provenance["config"] == {"fail_on": "", "offset": 0.0, "no_headline": False, "sleep": 0.0} and provenance["headline"] == "models"
    assert load_results("noop", spec, store, plugins=[NOOP]).equals(report.table())


def test_a_rerun_skips_finished_cells_and_redoes_missing_or_stale_ones(zoo_copy):
    spec, store = zoo_copy
    first = noop(spec, store)
    assert (noop(spec, store).ran, noop(spec, store).current) == (0, 4)
    (first.results.folder / "w4-bs64.json").unlink()  # as if interrupted before this cell
    stale = first.results.folder / "w16-bs64.json"
    record = json.loads(stale.read_text())
    stale.write_text(json.dumps({**record, "inputs": "from an older checkpoint"}))
    again = noop(spec, store)
    assert (again.ran, again.current) == (2, 2)


def test_another_config_is_another_result_set(zoo_copy):
    spec, store = zoo_copy
    plain, shifted = noop(spec, store), noop(spec, store, offset=1)
    assert plain.results.folder != shifted.results.folder and shifted.ran == 4
    assert (shifted.table()["models"] == 4).all()


def test_a_failing_cell_is_recorded_and_spares_the_others(zoo_copy):
    spec, store = zoo_copy
    report = noop(spec, store, fail_on="w4-bs64")
    assert report.failed == {"w4-bs64": "RuntimeError: told to fail on w4-bs64"}
    table = report.table().set_index("unit")
    assert table.loc["w4-bs64", "status"] == "failed" and (table.drop("w4-bs64")["status"] == "ok").all()
    details = json.loads((report.results.folder / "w4-bs64.json").read_text())["details"]
    assert "Traceback" in details and "noop.py" in details
    assert noop(spec, store, fail_on="w4-bs64").ran == 1  # failures are retried, successes kept


def test_without_generation_an_empty_zoo_is_a_usage_error(tmp_path):
    spec = load_spec(str(write_spec(tmp_path)))
    with pytest.raises(UsageError, match="has no models .* drop --no-generate"):
        run("noop", spec, Store(tmp_path / "home"), plugins=[NOOP], generate_missing=False, execution=QUIET)


def test_cli_runs_an_installed_plugin_from_an_empty_store_then_resumes(tmp_path):
    """From nothing: trains, annotates, runs the entry-point plugin, prints the phase table, writes a heatmap."""
    site = install_example(tmp_path / "site")
    spec = write_spec(tmp_path, "cli_zoo", epochs=1, seeds=(0, 1), widths=(4,), batch_sizes=(64, 128))
    env = {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    first = zoobench_cli("run", "--method", "weightnorm", "--zoo", str(spec), "--workers", "1",
                         home=tmp_path / "home", env=env)
    assert first.returncode == 0, first.stderr
    assert "cli_zoo: trained 4 models" in first.stdout and "annotated 2 cells with mc" in first.stdout
    assert "weightnorm on cli_zoo: 2 units computed" in first.stdout
    assert "by phase" in first.stdout and "weight_norm" in first.stdout
    heatmap = Path(first.stdout.split("heatmap:")[1].split()[0])
    assert heatmap.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    again = zoobench_cli("run", "--method", "weightnorm", "--zoo", str(spec), home=tmp_path / "home", env=env)
    assert again.returncode == 0 and "0 units computed" in again.stdout and "2 already current" in again.stdout

    failing = zoobench_cli("run", "--method", "noop", "--plugin", NOOP, "--set", "fail_on=w4-bs64", "--zoo",
                           str(spec), "--no-generate", home=tmp_path / "home")
    assert failing.returncode == 1
    assert failing.stderr.startswith("error: 1 of 2 units failed, 1 with: RuntimeError: told to fail on w4-bs64")
    assert "Traceback" not in failing.stderr

    headless = zoobench_cli("run", "--method", "noop", "--plugin", NOOP, "--set", "no_headline=true", "--zoo",
                            str(spec), "--no-generate", home=tmp_path / "home")
    assert headless.returncode == 0, headless.stderr
    assert "noop reported no 'models' on cli_zoo" in headless.stdout and "by phase" in headless.stdout


def test_cli_bad_method_and_bad_setting_are_one_line_usage_errors(tmp_path):
    spec = write_spec(tmp_path)
    unknown = zoobench_cli("run", "--method", "rebasn", "--zoo", str(spec), home=tmp_path / "home")
    assert unknown.returncode == 2 and unknown.stderr.count("\n") == 1
    assert "unknown method 'rebasn'; did you mean 'rebasin'?" in unknown.stderr
    bad = zoobench_cli("run", "--method", "noop", "--plugin", NOOP, "--set", "offset", "--zoo", str(spec),
                       home=tmp_path / "home")
    assert bad.returncode == 2 and "--set expects key=value, got 'offset'" in bad.stderr


@pytest.mark.parametrize("setting, message", [
    ("sparsities=[1.5]", "error: --set sparsities=[1.5]: method prune expects a list of a number in [0, 1]"),
    ("sparsities=[]", "error: method prune: sparsities must list at least one fraction in [0, 1]"),
    ("mode=random", "error: --set mode=random: method prune expects 'global' | 'layer'")])
def test_a_bad_setting_is_one_usage_error_before_any_work(tmp_path, setting, message):
    """Out of range, empty, or not one of the choices: refused when the config is built, before the
    zoo is trained or a single unit runs."""
    home = tmp_path / "home"
    result = zoobench_cli("run", "--method", "prune", "--zoo", "digits_mlp", "--set", setting, home=home)
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [message], result.stderr
    assert not home.exists()  # nothing was trained, annotated or run


def test_without_generation_damaged_models_are_reported_and_left_out(zoo_copy):
    spec, store = zoo_copy
    weights = next((store.zoo(spec).models_dir / "w4-bs64-s1").rglob("model.safetensors"))
    weights.write_bytes(weights.read_bytes()[:64])
    report = noop(spec, store)
    assert list(report.damaged) == ["w4-bs64-s1"] and "has 64 bytes" in report.damaged["w4-bs64-s1"]
    assert report.table().set_index("unit").loc["w4-bs64", "models"] == 2
    printed = zoobench_cli("run", "--method", "noop", "--plugin", NOOP, "--zoo", spec.source, "--no-generate",
                           home=store.home)
    assert printed.returncode == 0, printed.stderr
    assert "left out damaged model w4-bs64-s1" in " ".join(printed.stdout.split())


def test_methods_list_shows_plugins_and_warns_about_broken_ones(tmp_path):
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('boom')\n")
    listed = zoobench_cli("methods", "list", "--plugin", NOOP, "--plugin", str(broken))
    assert listed.returncode == 0
    assert "noop" in listed.stdout and "rebasin" in listed.stdout and NOOP in listed.stdout
    assert "skipped: RuntimeError: boom (at broken.py:1)" in listed.stderr
    shown = zoobench_cli("methods", "show", "prune")
    assert shown.returncode == 0 and "headline: max_sparsity (higher is better)" in shown.stdout
    assert "--set sparsities: a list of a number in [0, 1]; default" in shown.stdout and "(0.1, 0.2," in shown.stdout


def test_ctrl_c_keeps_finished_cells_and_a_rerun_does_only_the_rest(zoo_copy):
    spec, store = zoo_copy
    results = store.zoo(spec).path / "results" / "noop"
    process = subprocess.Popen([sys.executable, "-m", "zoobench", "run", "--method", "noop", "--plugin", NOOP,
                                "--set", "sleep=1.5", "--zoo", spec.source, "--no-generate", "--workers", "1"],
                               env=dict(os.environ, ZOOBENCH_HOME=str(store.home)), stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(results.glob("*/w*.json")) and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130
    assert stderr.strip() == "interrupted: finished work is kept; run the same command again to resume"
    finished = len(list(results.glob("*/w*.json")))
    assert 1 <= finished < 4 and not list(results.rglob(".tmp-*"))  # no half-written result file
    again = run("noop", spec, store, settings={"sleep": "1.5"}, plugins=[NOOP], generate_missing=False,
                execution=QUIET)
    assert (again.ran, again.current) == (4 - finished, finished)
