"""The command line as a user meets it: exit codes, one-line errors, no tracebacks."""

import pytest

from conftest import write_spec, zoobench_cli


def _one_line_error(result, code: int, *fragments: str) -> None:
    assert result.returncode == code, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_unknown_zoo_lists_the_valid_ones(home):
    _one_line_error(zoobench_cli("zoo", "generate", "cifar11_r18", home=home), 2,
                    "unknown zoo 'cifar11_r18'", "did you mean 'cifar10_r18'", "digits_mlp")


@pytest.mark.parametrize("args, fragment", [
    (("zoo", "generate", "digits_mlp", "--units-per-gpu", "0"), "Invalid value for '--units-per-gpu'"),
    (("zoo", "generate", "digits_mlp", "--bogus"), "No such option: --bogus; see `"),
    (("zoo", "generat"), "No such command 'generat'. Did you mean 'generate'?"),
    (("run", "--zoo", "digits_mlp"), "Missing option '--method'")])
def test_malformed_command_lines_are_one_line_errors(args, fragment, home):
    _one_line_error(zoobench_cli(*args, home=home), 2, fragment)


def test_a_bare_command_group_shows_its_help(home):
    result = zoobench_cli("zoo", home=home)
    assert result.returncode == 2 and "generate" in result.stdout + result.stderr and "Traceback" not in result.stderr


def test_malformed_toml_and_empty_grid_are_usage_errors(tmp_path, home):
    broken = tmp_path / "broken.toml"
    broken.write_text("[zoo]\nname = \n")
    _one_line_error(zoobench_cli("zoo", "show", str(broken), home=home), 2, str(broken), "not valid TOML")
    empty = write_spec(tmp_path, name="empty", widths=())
    _one_line_error(zoobench_cli("zoo", "generate", str(empty), home=home), 2, "'grid.load.values' is empty")


def test_bad_filter_value_is_a_usage_error(tiny_spec_path, home):
    _one_line_error(zoobench_cli("zoo", "generate", str(tiny_spec_path), "--widths", "5", home=home), 2,
                    "5 is not a load value", "valid: 4, 8")


def test_generate_list_show_and_verify(tiny_spec_path, home):
    first = zoobench_cli("zoo", "generate", str(tiny_spec_path), "--widths", "4", "--seeds", "0", home=home)
    assert first.returncode == 0, first.stderr
    assert "trained 2 models" in first.stdout
    second = zoobench_cli("zoo", "generate", str(tiny_spec_path), "--widths", "4", "--seeds", "0", home=home)
    assert second.returncode == 0 and "nothing to do" in second.stdout
    listing = zoobench_cli("zoo", "list", home=home)
    assert listing.returncode == 0 and "digits_mlp" in listing.stdout and "2/8" in listing.stdout
    shown = zoobench_cli("zoo", "show", "tiny", home=home)
    assert shown.returncode == 0 and "1/2" in shown.stdout and "0/2" in shown.stdout
    assert zoobench_cli("zoo", "verify", "tiny", home=home).returncode == 0


def test_truncated_checkpoint_fails_verify_with_one_line_per_model(tiny_spec_path, home):
    assert zoobench_cli("zoo", "generate", str(tiny_spec_path), "--widths", "4", "--seeds", "0",
                        "--batch-sizes", "64", home=home).returncode == 0
    weights = next(home.rglob("checkpoint_000002/model.safetensors"))
    weights.write_bytes(weights.read_bytes()[:100])
    result = zoobench_cli("zoo", "verify", "tiny", home=home)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.splitlines()[0].startswith("error: model w4-bs64-s0: checkpoint_000002/model.safetensors has 100 bytes")


@pytest.mark.parametrize("zoo, width, batch, seed", [("cifar10_r18", "2", "1024", "0"), ("owt_gpt2", "192", "32", "1")])
def test_missing_datasets_fail_before_training_in_one_line(tmp_path, home, zoo, width, batch, seed):
    result = zoobench_cli("zoo", "generate", zoo, "--widths", width, "--batch-sizes", batch, "--seeds", seed,
                          "--data-root", str(tmp_path / "data"), home=home)
    _one_line_error(result, 1, "not found", str(tmp_path / "data"), "--data-root or ZOOBENCH_DATA")
    assert not list(home.rglob("done.json"))


def test_data_download_explains_what_it_cannot_fetch(tmp_path):
    result = zoobench_cli("data", "download", "tinyimagenet", "--data-root", str(tmp_path))
    _one_line_error(result, 1, "cannot download tinyimagenet", "tiny-imagenet-200.zip")
    assert "needs no download" in zoobench_cli("data", "download", "digits", "--data-root", str(tmp_path)).stdout
    _one_line_error(zoobench_cli("data", "download", "cifar11", "--data-root", str(tmp_path)), 2,
                    "did you mean 'cifar10'")


def test_listing_and_spec_loading_never_import_torch_or_a_plugin(home):
    """Loading specs, listing zoos and finding methods import neither torch nor any method's module; the
    public API's `generate` and `annotate` are functions."""
    import subprocess
    import sys

    code = ("import sys, zoobench; from zoobench.cli import app; s = zoobench.load_spec('digits_mlp'); "
            "zoobench.Store().catalogue(); zoobench.list_specs(); from zoobench.bench.plugins import discover; "
            "assert 'rebasin' in discover().names(); "
            "assert callable(zoobench.generate) and callable(zoobench.annotate); "
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('zoobench.methods.')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={"ZOOBENCH_HOME": str(home), "PATH": ""})
    assert result.stdout.strip() == "[]", result.stderr


def test_show_explains_each_phase_label(tiny_spec_path, home):
    assert zoobench_cli("zoo", "generate", str(tiny_spec_path), "--widths", "8", home=home).returncode == 0
    annotated = zoobench_cli("zoo", "annotate", str(tiny_spec_path), "--metrics", "eval,cka", home=home)
    assert annotated.returncode == 0, annotated.stderr
    assert "eval: annotated 2 cells" in annotated.stdout and "phase per cell" in annotated.stdout
    shown = zoobench_cli("zoo", "show", "tiny", "--why", home=home)
    assert "w8-bs64: ?: missing mc" in shown.stdout


def test_a_path_that_cannot_be_written_is_a_one_line_error(zoo_copy, tmp_path):
    spec, store = zoo_copy
    (tmp_path / "a_file").write_text("")
    result = zoobench_cli("report", "--zoo", spec.source, "--out", str(tmp_path / "a_file" / "report.html"),
                          home=store.home)
    _one_line_error(result, 2, "File exists", "a_file", "check the path given")
