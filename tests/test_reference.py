"""Reference zoos from the paper's published metrics: import (reduced and full files, and their faults),
the commands that need only metrics, the comparison of a zoo with a reference, and the paper's CKA."""

import csv
import json

import pandas as pd
import pytest
import torch

from conftest import zoobench_cli
from zoobench.errors import UsageError
from zoobench.landscape.annotations import cell_table
from zoobench.reports.reference import compare_reference
from zoobench.store import Store, published
from zoobench.store.reference import import_summary, shipped

CIFAR10_R18 = shipped()["cifar10_r18@ptmz"]


def test_every_shipped_reference_imports_with_the_papers_grid_and_its_faults_reported(tmp_path):
    store = Store(tmp_path)
    assert sorted(shipped()) == sorted(f"{z}@ptmz" for z in [
        "cifar100_r50", "cifar100_vit", "cifar10_r18", "cifar10_r50", "cifar10_vit", "svhn_r18", "svhn_r50",
        "tinyimagenet_r18", "tinyimagenet_r50"])
    epochs, faults = {}, {}
    for name, path in shipped().items():
        spec, report = import_summary(path, name, store, show_progress=False)
        builtin = store.resolve(name.split("@")[0])
        assert (spec.data.dataset, spec.model, spec.grid.load.field) == \
            (builtin.data.dataset, builtin.model, builtin.grid.load.field)
        assert set(spec.grid.load.values) <= set(builtin.grid.load.values)
        assert set(spec.grid.temperature.values) <= set(builtin.grid.temperature.values)
        epochs[name], faults[name] = (spec.metric_epoch, report.epochs), report.faults
    assert epochs["cifar10_r18@ptmz"] == (115, [115, 150])  # the paper's epoch, then the last
    assert epochs["svhn_r18@ptmz"] == (135, [135, 150])
    assert epochs["tinyimagenet_r18@ptmz"] == (90, [90])
    assert faults["cifar10_r18@ptmz"] == []
    assert any("second experiment" in f and "wd 0.0005" in f for f in faults["cifar100_vit@ptmz"])
    assert any("runs at chance" in f for f in faults["svhn_r50@ptmz"])
    assert any("identical test accuracy" in f for f in faults["cifar100_r50@ptmz"])
    assert any("18 (load, batch size, seed) keys claimed by 36 runs" in f for f in faults["tinyimagenet_r50@ptmz"])


def test_runs_claiming_one_model_are_dropped_never_averaged(tmp_path):
    store = Store(tmp_path)
    spec, report = import_summary(shipped()["svhn_r50@ptmz"], "svhn_r50@ptmz", store, show_progress=False)
    zoo = store.zoo(spec)
    ids = {r.id for r in zoo.models()}
    assert "w256-bs128-s0" not in ids and "w256-bs1024-s0" not in ids and "w128-bs128-s0" in ids
    cells = {c["cell_id"]: c for c in published.read(zoo, 150)["cells"]}
    assert "w256-bs128" not in cells and cells["w128-bs128"]["models"] == 3
    assert any("claimed by 6 runs" in f and "not averaged" in f for f in report.faults)


def _full_form(reduced, path, extra_epochs=(0, 1, 116)):
    """The file as the authors published it: the quoted Ray Tune trial name first, every epoch, and one
    replacement run whose name says another batch size than its rows."""
    frame = pd.read_csv(reduced)
    names = {row.trial_id: f"NN_tune_trainable_{row.trial_id}_0_model_width={row.width},seed={row.seed},"
                           f"training_batchsize={row.batchsize}_2024-05-21_13-14-23"
             for row in frame.drop_duplicates("trial_id").itertuples()}
    victim = frame.loc[(frame["width"] == 4) & (frame["batchsize"] == 64) & (frame["seed"] == 1), "trial_id"].iloc[0]
    names[victim] = names[victim].replace("training_batchsize=64", "training_batchsize=1024")
    early = []
    for epoch in extra_epochs:
        rows = frame[frame["epoch"] == 115].copy()
        rows["epoch"] = epoch
        rows[list(published.COLUMNS)] = float("nan")
        early.append(rows)
    full = pd.concat([frame, *early]).sort_values(["trial_id", "epoch"])
    full.insert(0, "model", full["trial_id"].map(names))
    full.to_csv(path, index=False, quoting=csv.QUOTE_NONNUMERIC)
    return victim


def test_a_full_published_file_imports_as_the_reduced_one_does(tmp_path):
    full = tmp_path / "cifar10_resnet18_summary.csv"
    victim = _full_form(CIFAR10_R18, full)
    assert full.read_text().startswith('"model","trial_id"')
    store = Store(tmp_path / "home")
    spec, report = import_summary(full, "c10_full", store, show_progress=False)
    assert spec.metric_epoch == 115 and report.epochs == [115, 150]
    assert len(report.faults) == 2 and victim in report.faults[0] and "contradicts" in report.faults[0]
    assert "w4-bs64-s1" in report.faults[1]  # the dropped run leaves its model missing, said so
    zoo = store.zoo(spec)
    assert zoo.results(["w2-bs8-s0"])["epoch"].tolist() == [0, 1, 115, 116, 150]
    reduced_spec, _ = import_summary(CIFAR10_R18, "c10_reduced", store, show_progress=False)
    a = cell_table(zoo).set_index("cell_id").drop(columns="models")
    b = cell_table(store.zoo(reduced_spec)).set_index("cell_id").drop(columns="models")
    same = [c for c in a.index if c != "w4-bs64"]  # one seed fewer there
    pd.testing.assert_frame_equal(a.loc[same], b.loc[same])
    again = import_summary(full, "c10_full", store, show_progress=False)[1]
    assert again.added == 0 and again.models == report.models  # resumable and idempotent


def test_published_annotations_are_shown_as_published_and_never_mixed_with_computed(tmp_path):
    store = Store(tmp_path)
    spec = store.resolve("cifar10_r18@ptmz")
    zoo = store.zoo(spec)
    table = cell_table(zoo)
    assert set(table["source"]) == {"published"} and "batches of 128" in table["cka_estimator"].iloc[0]
    row = table.set_index("cell_id").loc["w2-bs1024"]
    assert row["mc"] == pytest.approx(-13.36 / 100, abs=1e-3)  # published in points, stored as a fraction
    assert row["models"] == 3 and row["gap"] == pytest.approx(row["train_acc"] - row["test_acc"])
    assert set(cell_table(zoo, epoch=150)["source"]) == {"published"}
    with pytest.raises(UsageError, match="no published annotations at epoch 140"):
        cell_table(zoo, epoch=140, source="published")
    with pytest.raises(UsageError, match="published metrics only, no weights"):
        zoo.require_weights("method rebasin")


def test_the_commands_that_need_only_metrics_work_on_a_reference_zoo(tmp_path):
    home = tmp_path / "home"
    shown = zoobench_cli("zoo", "show", "cifar10_r18@ptmz", home=home)
    assert shown.returncode == 0, shown.stderr
    assert "published by the zoo's authors" in shown.stdout and "IV-B" in shown.stdout
    as_csv = zoobench_cli("zoo", "phases", "cifar10_r18@ptmz", "--format", "csv", home=home)
    rows = list(csv.DictReader(as_csv.stdout.splitlines()))
    assert len(rows) == 64 and {"load", "temperature", "phase", "reason", "train_loss", "test_acc", "cka", "mc",
                                "hessian_log_trace", "cka_estimator"} <= set(rows[0])
    as_json = json.loads(zoobench_cli("zoo", "phases", "cifar10_r18@ptmz", "--format", "json", "--epoch", "150",
                                      home=home).stdout)
    assert as_json["epoch"] == 150 and len(as_json["cells"]) == 64 and as_json["thresholds"]["mc"] > 0
    table = zoobench_cli("zoo", "phases", "cifar10_r18@ptmz", home=home)
    assert table.returncode == 0 and max(map(len, table.stdout.splitlines())) <= 80
    refused = zoobench_cli("run", "--method", "prune", "--zoo", "cifar10_r18@ptmz", home=home)
    assert refused.returncode == 2 and "published metrics only" in refused.stderr
    assert "Traceback" not in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    unknown = zoobench_cli("zoo", "show", "cifar10_r34@ptmz", home=home)
    assert unknown.returncode == 2 and "cifar10_r18@ptmz" in unknown.stderr
    listed = zoobench_cli("zoo", "list", home=home).stdout
    assert "published reference zoos" in listed and "svhn_r50@ptmz" in listed
    report = zoobench_cli("report", "--zoo", "cifar10_r18@ptmz", "--out", str(tmp_path / "r.html"), home=home)
    assert report.returncode == 0 and "published metrics" in (tmp_path / "r.html").read_text()


def _small(tmp_path, name, transform):
    """A small summary file from the published CIFAR-10 ResNet-18 metrics (widths 2-32, batch 32-512),
    its annotation columns passed through `transform`."""
    frame = pd.read_csv(CIFAR10_R18)
    frame = frame[frame["width"].between(2, 32) & frame["batchsize"].between(32, 512)]
    path = tmp_path / f"{name}.csv"
    transform(frame).to_csv(path, index=False)
    return path


def test_compare_reference_finds_a_copy_in_other_units_identical_and_a_perturbed_one_close(tmp_path):
    store = Store(tmp_path / "home")
    zoos = {}

    def rescaled(frame):  # mc in fractions written as points again, CKA from an estimator reading 0.05 higher
        return frame.assign(curve_mc_train_error=frame["curve_mc_train_error"] * 100,
                            representation_similarity=frame["representation_similarity"] + 0.05)

    def perturbed(frame):
        noise = torch.Generator().manual_seed(0)
        factor = 1 + 0.2 * (torch.rand(len(frame), generator=noise).numpy() - 0.5)
        keys = frame.groupby(["width", "batchsize"]).ngroup().to_numpy()  # one factor per cell
        return frame.assign(log_hessian_trace_train=frame["log_hessian_trace_train"] * factor[keys])

    for name, transform in [("original", lambda f: f), ("rescaled", rescaled), ("perturbed", perturbed)]:
        spec, _ = import_summary(_small(tmp_path, name, transform), name, store, like="cifar10_r18",
                                 show_progress=False)
        zoos[name] = store.zoo(spec)
    same = compare_reference(zoos["rescaled"], zoos["original"], out=tmp_path / "out")
    metrics = same.metrics.set_index("metric")
    assert same.agreement == 1.0 and metrics.loc["mc", "spearman"] == pytest.approx(1.0)
    assert metrics.loc["mc", "median_ratio"] == pytest.approx(100.0)
    assert metrics.loc["cka", "spearman"] == pytest.approx(1.0) and metrics.loc["cka", "median_ratio"] > 1.0
    assert metrics.loc["cka", "cells"] == 25 and same.files["figure"].stat().st_size > 0
    close = compare_reference(zoos["perturbed"], zoos["original"], out=tmp_path / "out")
    hessian = close.metrics.set_index("metric").loc["hessian_log_trace"]
    assert 0.8 < hessian["spearman"] < 1.0 and 0.9 < hessian["median_ratio"] < 1.1
    assert close.agreement == 1.0  # the rule does not read the Hessian
    assert pd.read_csv(close.files["cells_csv"]).shape[0] == 25


def test_the_papers_cka_estimator_is_the_biased_cka_averaged_over_batches():
    from zoobench.data import load_dataset
    from zoobench.landscape.cka import linear_cka
    from zoobench.landscape.metrics.cka import CKASettings, seed_similarity
    from zoobench.models import build_model

    data = load_dataset("digits")
    torch.manual_seed(0)
    recipe = {"model": {"architecture": "mlp", "options": {"width": 8, "depth": 1, "activation": "relu"}},
              "data": {"dataset": "digits", "options": {}}}
    models = [build_model(recipe).eval() for _ in range(3)]
    paper = CKASettings(estimator="paper", batches=3, batch_size=64)
    got = seed_similarity(models, data, paper)
    batches = data.fixed_batches("test", 3, 64, 0)
    with torch.no_grad():
        expected = sum(linear_cka(models[i](x), models[j](x), unbiased=False) for x, _ in batches
                       for i, j in [(0, 1), (0, 2), (1, 2)]) / 9
    assert got["cka"] == pytest.approx(expected) and got["cka_pairs"] == 3
    unbiased = seed_similarity(models, data, CKASettings(samples=192))["cka"]
    assert got["cka"] > unbiased  # the biased estimator reads higher at n = 64
    assert "64 test images (paper)" in paper.describe()


def test_a_reference_is_imported_once_and_an_interrupted_import_resumes(tmp_path):
    import shutil

    store = Store(tmp_path)
    spec = store.resolve("svhn_r18@ptmz")
    zoo = store.zoo(spec)
    stamp = published.path(zoo, 135).stat().st_mtime_ns
    assert store.resolve("svhn_r18@ptmz") == spec and published.path(zoo, 135).stat().st_mtime_ns == stamp
    # an import killed after some models: no completion record, a model missing
    (zoo.path / "published" / "imported.json").unlink()
    shutil.rmtree(zoo.models_dir / "w2-bs8-s0")
    _, report = import_summary(shipped()["svhn_r18@ptmz"], "svhn_r18@ptmz", store, show_progress=False)
    assert report.added == 1 and report.models == 192 and published.imported(zoo) is not None


def test_reference_leaderboards_hold_the_phase_map_the_rule_and_the_sheet(tmp_path):
    from zoobench.reports.leaderboard import publish_reference

    report = publish_reference(Store(tmp_path / "home"), ["cifar10_r18@ptmz"], tmp_path / "boards")
    folder = tmp_path / "boards" / "reference" / "cifar10_r18"
    assert report.folders == [folder] and {p.name for p in folder.iterdir()} == {"phases.csv", "phases.md",
                                                                                  "sheet.png"}
    text = (folder / "phases.md").read_text()
    assert "| 1024 | I | III | III | III |" in text and "rule: train loss > 0.23" in text
    assert "| cifar10_r18 | I 9, II 22, III 11, IV-A 9, IV-B 13 |" in report.index.read_text()
