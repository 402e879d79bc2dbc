"""Import and export of the published Phase Transition Model Zoo layout."""

import json
import os

import pytest
import torch

from conftest import QUIET, write_spec, zoobench_cli
from zoobench.errors import UsageError
from zoobench.train.generate import generate
from zoobench.store.ptmz import export_zoo, import_zoo
from zoobench.spec import read_spec_file
from zoobench.store import Store
from zoobench.models import build_model


@pytest.mark.parametrize("lr, status", [(0.1, "ok"), (1e4, "diverged")])
def test_export_then_import_is_lossless(tmp_path, lr, status):
    spec = read_spec_file(write_spec(tmp_path, seeds=(0,), lr=lr, widths=(4,), batch_sizes=(64,)))
    spec = spec.with_overrides({"grid.seeds": [0, 1], "grid.load.values": [4, 8]})
    original = Store(tmp_path / "a")
    generate(spec, original, execution=QUIET)
    zoo = original.zoo(spec)
    assert export_zoo(zoo, tmp_path / "export", show_progress=False) == 4
    assert export_zoo(zoo, tmp_path / "export", show_progress=False) == 0  # idempotent
    imported_spec, report = import_zoo(tmp_path / "export", "tiny", Store(tmp_path / "b"), show_progress=False)
    assert imported_spec.fingerprint == spec.fingerprint and not report.skipped and len(report.imported) == 4
    back = Store(tmp_path / "b").zoo(imported_spec)
    assert {r.status for r in back.models()} == {status}
    assert [(r.id, r.status, r.epochs) for r in back.models()] == [(r.id, r.status, r.epochs) for r in zoo.models()]
    assert back.results().equals(zoo.results())
    for record in zoo.models():
        for epoch in record.epochs:
            mine, theirs = zoo.load_state(record.id, epoch), back.load_state(record.id, epoch)
            assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)
        for name in ["params.json", "result.json", "done.json"]:
            assert (record.path / name).read_bytes() == (back.models_dir / record.id / name).read_bytes()


def _trial(root, name, width, batch, seed, state, lines, lr=0.1):
    trial = root / name
    (trial / "checkpoint_000002").mkdir(parents=True)
    params = {"model::type": "Resnet18_width", "model::width": width, "model::o_dim": 10, "model::channels_in": 3,
              "model::init_type": "kaiming_uniform", "optim::optimizer": "sgd", "optim::lr": lr, "optim::wd": 5e-4,
              "optim::momentum": 0.9, "optim::scheduler": "OneCycleLR", "training::batchsize": batch,
              "training::epochs_train": 2, "seed": seed, "training::data_path": "/ds2/model_zoos/taxonomy/cifar_10/"}
    (trial / "params.json").write_text(json.dumps(params))
    (trial / "result.json").write_text("".join(json.dumps(line) + "\n" for line in lines))
    torch.save(state, trial / "checkpoint_000002" / "checkpoints")
    return trial


class Malicious:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def published(tmp_path):
    """A tiny published-layout zoo: two good ResNet-18 trials, one DataParallel-prefixed, one malicious, one mismatched."""
    root = tmp_path / "ptmz"
    recipe = lambda width: {"model": {"architecture": "resnet", "options": {"width": width, "depth": 18}},  # noqa: E731
                            "data": {"dataset": "cifar10", "options": {}}}
    torch.manual_seed(0)
    states = {seed: build_model(recipe(2)).state_dict() for seed in (0, 1)}
    lines = [{"train_loss": 2.3, "test_acc": 0.1, "training_iteration": 1, "time_this_iter_s": 3.5, "pid": 7},
             {"train_loss": 1.9, "test_acc": 0.3, "training_iteration": 2, "time_this_iter_s": 3.4},
             {"train_loss": 1.5, "test_acc": 0.4, "training_iteration": 3, "hessian_trace": 12.5}]
    _trial(root, "trial_a", 2, 8, 0, states[0], lines)
    _trial(root, "trial_b", 2, 8, 1, {f"module.{k}": v for k, v in states[1].items()}, lines)
    marker = tmp_path / "pwned"
    _trial(root, "trial_evil", 2, 16, 0, {"conv1.weight": Malicious(marker)}, lines)
    _trial(root, "trial_wrong", 2, 16, 1, build_model(recipe(4)).state_dict(), lines)
    return root, states, marker


def test_published_zoo_imports_and_refuses_malicious_pickles(published, tmp_path):
    root, states, marker = published
    store = Store(tmp_path / "home")
    spec, report = import_zoo(root, "c10_r18", store, show_progress=False)
    assert not marker.exists(), "the malicious pickle ran code"
    assert "weights_only" in report.skipped["trial_evil"]
    assert "does not fit resnet" in report.skipped["trial_wrong"]
    assert sorted(report.imported) == ["w2-bs8-s0", "w2-bs8-s1"]
    assert (spec.data.dataset, spec.model.architecture, spec.model.options["depth"]) == ("cifar10", "resnet", 18)
    assert spec.grid.load.values == (2,) and spec.grid.temperature.values == (8, 16) and spec.grid.seeds == (0, 1)
    assert (spec.training.lr, spec.training.epochs, spec.training.schedule) == (0.1, 2, "onecycle")
    zoo = store.zoo(spec)
    for seed in (0, 1):  # the module. prefix of DataParallel checkpoints is stripped
        loaded = zoo.load_state(f"w2-bs8-s{seed}", 2)
        assert all(torch.equal(loaded[k], states[seed][k]) for k in states[seed])
    rows = zoo.results(["w2-bs8-s0"]).to_dict("records")
    assert [r["epoch"] for r in rows] == [0, 1, 2]  # line i is epoch i
    assert rows[0]["seconds"] == 3.5 and "pid" not in rows[0] and "training_iteration" not in rows[0]
    assert rows[2]["hessian_trace"] == 12.5  # annotations survive
    again_spec, again = import_zoo(root, "c10_r18", store, show_progress=False)
    assert again_spec.fingerprint == spec.fingerprint and sorted(again.already) == sorted(report.imported)
    assert not again.imported


def test_cli_import_reports_skipped_trials_and_exits_1(published, tmp_path):
    root, _, marker = published
    result = zoobench_cli("zoo", "import", str(root), "--name", "c10", home=tmp_path / "home")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "imported 2 models" in " ".join(result.stdout.split())
    assert sum(line.startswith("skipped trial_") for line in result.stderr.splitlines()) == 2
    assert not marker.exists()


def test_trials_with_different_recipes_are_not_one_zoo(tmp_path):
    root = tmp_path / "mixed"
    state = build_model({"model": {"architecture": "resnet", "options": {"width": 2, "depth": 18}},
                         "data": {"dataset": "cifar10", "options": {}}}).state_dict()
    _trial(root, "a", 2, 8, 0, state, [], lr=0.1)
    _trial(root, "b", 2, 8, 1, state, [], lr=0.05)
    with pytest.raises(UsageError, match="differ in optim::lr"):
        import_zoo(root, "mixed", Store(tmp_path / "home"), show_progress=False)
    with pytest.raises(UsageError, match="no trial folders"):
        import_zoo(tmp_path / "empty_dir_that_is_missing", "x", Store(tmp_path / "home"), show_progress=False)


def test_published_annotation_keys_in_result_json_become_the_zoos_annotations(tmp_path):
    """A published-layout zoo whose result.json lines carry the paper's annotation keys shows its phases
    with no dataset anywhere and nothing computed."""
    root = tmp_path / "ptmz"
    recipe = {"model": {"architecture": "resnet", "options": {"width": 2, "depth": 18}},
              "data": {"dataset": "cifar10", "options": {}}}
    state = build_model(recipe).state_dict()
    annotated = {"representation_similarity": 0.8, "curve_mc_train_error": -12.0, "curve_mc_test_error": -4.0,
                 "log_hessian_trace_train": 8.5, "log_hessian_top_ev_val": 7.0}
    for batch, mc in [(8, 7.5), (16, -12.0)]:
        for seed in (0, 1):
            lines = [{"train_loss": 2.3, "test_acc": 0.1, "train_acc": 0.1},
                     {"train_loss": 1.9, "test_acc": 0.3, "train_acc": 0.35},
                     {"train_loss": 1.2 + 0.1 * seed, "test_acc": 0.5, "train_acc": 0.55,
                      **annotated, "curve_mc_train_error": mc}]
            _trial(root, f"trial_{batch}_{seed}", 2, batch, seed, state, lines)
    home = tmp_path / "home"
    result = zoobench_cli("zoo", "import", str(root), "--name", "annotated", home=home)
    assert result.returncode == 0 and "published annotations kept at epochs [2]" in " ".join(result.stdout.split())
    phases = zoobench_cli("zoo", "phases", "annotated", "--format", "json", home=home,
                          env={"ZOOBENCH_DATA": str(tmp_path / "no-data")})
    cells = {c["cell_id"]: c for c in json.loads(phases.stdout)["cells"]}
    assert cells["w2-bs8"]["phase"] == "II" and cells["w2-bs16"]["phase"] == "I"
    assert cells["w2-bs8"]["train_loss"] == pytest.approx(1.25) and cells["w2-bs16"]["mc"] == pytest.approx(-0.12)
    assert {c["source"] for c in cells.values()} == {"published"}
    zoo_folder = next((home / "zoos").glob("annotated-*"))
    assert not (zoo_folder / "annotations").exists()  # nothing was computed
