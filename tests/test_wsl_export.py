"""`zoo export --format wsl|unterthiner`: read back with readers written here from the format's description
(the export's README, NFN's `ZooDataset`), each gives the store's state dicts exactly; the splits keep a
model on one side and cross phases and loads as they say; an interrupted export resumes without
rewriting what it finished; what the Small CNN Zoo layout cannot hold is refused."""

from __future__ import annotations

import ast
import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from zoobench.errors import UsageError
from zoobench.models import build_model
from zoobench.store import Store
from zoobench.store.ptmz import import_zoo
from zoobench.wsl import export as export_module
from zoobench.wsl.export import export_weights

from test_ptmz import _trial


def read_wsl(folder: Path) -> tuple[dict, pd.DataFrame]:
    """(model id, epoch) -> state dict, and the metrics of every global row, from the format description alone."""
    index = pd.read_csv(folder / "index.csv")
    states, metrics = {}, []
    for group in index.itertuples():
        weights = np.load(folder / group.folder / "weights.npy", allow_pickle=False, mmap_mode="r")
        layout = pd.read_csv(folder / group.folder / "layout.csv")
        table = pd.read_csv(folder / group.folder / "metrics.csv")
        assert weights.dtype == np.float32 and weights.shape == (group.rows, group.columns) and len(table) == group.rows
        assert list(layout.offset) == list(np.cumsum([0, *layout.numel])[:-1])
        for i, row in enumerate(table.itertuples()):
            states[(row.model_id, row.epoch)] = {
                t.name: torch.from_numpy(np.array(weights[i, t.offset:t.offset + t.numel]))
                .reshape(json.loads(t.shape)).to(getattr(torch, t.dtype)) for t in layout.itertuples()}
        metrics.append(table)
    return states, pd.concat(metrics, ignore_index=True)


def read_like_nfn(group: Path, epoch: int) -> tuple[list[np.ndarray], list[np.ndarray], pd.DataFrame]:
    """What NFN's ZooDataset does with a Small CNN Zoo folder (its reading steps, with `step == epoch` for its
    hard-coded 86): shuffle by the index file, keep one step, cut each layout row out and turn kernels back
    from TensorFlow's axis order to PyTorch's."""
    data = np.load(group / "weights.npy")
    shuffled = pd.read_csv(group / "idcs.csv", header=None).values.flatten()
    data = data[shuffled]
    metrics = pd.read_csv(group / "metrics.csv.gz", compression="gzip").iloc[shuffled]
    final = (metrics["step"] == epoch).to_numpy()
    data, metrics = data[final], metrics[final]
    assert np.isfinite(data).all()
    weights, biases = [], []
    for _, row in pd.read_csv(group / "layout.csv").iterrows():
        block = data[:, row["start_idx"]:row["end_idx"]]
        block = block.reshape((len(block), *ast.literal_eval(row["shape"])))
        if row["varname"].endswith("kernel:0"):
            weights.append(block.transpose(0, 4, 3, 1, 2) if block.ndim == 5 else block.transpose(0, 2, 1))
        elif row["varname"].endswith("bias:0"):
            biases.append(block)
        else:
            raise ValueError(row["varname"])
    return weights, biases, metrics.reset_index(drop=True)


def test_wsl_export_reads_back_to_the_stored_state_dicts_and_metrics(zoo_copy, tmp_path):
    spec, store = zoo_copy
    zoo = store.zoo(spec)
    epochs = (1, spec.metric_epoch)
    report = export_weights(zoo, tmp_path / "out", "wsl", epochs, show_progress=False)
    states, metrics = read_wsl(tmp_path / "out")
    models = [r.id for r in zoo.models()]
    assert sorted(states) == sorted((m, e) for m in models for e in epochs) and report.rows == len(states)
    for (model_id, epoch), state in states.items():
        stored = zoo.load_state(model_id, epoch)
        assert list(state) == list(build_model(zoo.params(model_id)["recipe"]).state_dict())  # module order
        assert all(torch.equal(state[k], stored[k]) for k in stored)
    results = zoo.results().set_index(["model_id", "epoch"])
    for row in metrics.itertuples():
        assert row.test_acc == pytest.approx(results.loc[(row.model_id, row.epoch), "test_acc"], abs=0)
        assert row.gap == pytest.approx(row.train_acc - row.test_acc)
    phases = {r["cell_id"]: r["phase"] for r in zoo_phases(zoo)}
    assert all(row.phase == phases[row.cell] for row in metrics.itertuples())  # the metric epoch's label
    assert metrics.loc[metrics.epoch == spec.metric_epoch, "cell_cka"].notna().all()
    assert metrics.loc[metrics.epoch == 1, "cell_cka"].isna().all()  # not annotated at epoch 1
    index = pd.read_csv(tmp_path / "out" / "index.csv")
    assert list(index.group) == ["w4", "w16"] and list(index.first_row) == [0, index.rows[0]]


def zoo_phases(zoo):
    from zoobench.landscape.phases import phase_table

    return phase_table(zoo, zoo.spec.metric_epoch).to_dict("records")


def test_batchnorm_buffers_and_integer_step_counts_round_trip_exactly(tmp_path):
    recipe = {"model": {"architecture": "resnet", "options": {"width": 2, "depth": 18}},
              "data": {"dataset": "cifar10", "options": {}}}
    torch.manual_seed(0)
    states = {seed: build_model(recipe).state_dict() for seed in (0, 1)}
    for state in states.values():
        state["bn1.running_var"] += torch.rand_like(state["bn1.running_var"])
        state["bn1.num_batches_tracked"] += 123457
    lines = [{"train_loss": 2.3, "test_acc": 0.1, "training_iteration": 1}]
    for seed, state in states.items():
        _trial(tmp_path / "ptmz", f"t{seed}", 2, 8, seed, state, lines)
    spec, _ = import_zoo(tmp_path / "ptmz", "r18", Store(tmp_path / "home"), show_progress=False)
    zoo = Store(tmp_path / "home").zoo(spec)
    export_weights(zoo, tmp_path / "out", "wsl", show_progress=False)
    read, _ = read_wsl(tmp_path / "out")
    for (model_id, _), state in read.items():
        original = states[int(model_id[-1])]
        assert state["bn1.num_batches_tracked"].dtype == torch.int64
        assert all(torch.equal(state[k], original[k]) for k in original)
    with pytest.raises(UsageError, match="BatchNorm.*--format wsl"):
        export_weights(zoo, tmp_path / "cnn", "unterthiner", show_progress=False)
    assert not (tmp_path / "cnn").exists()


def test_small_cnn_zoo_layout_loads_with_nfns_reading_logic(zoo_copy, tmp_path):
    spec, store = zoo_copy
    zoo = store.zoo(spec)
    export_weights(zoo, tmp_path / "out", "unterthiner", [1, 2], show_progress=False)
    for group in ("w4", "w16"):
        weights, biases, metrics = read_like_nfn(tmp_path / "out" / group, 2)
        assert len(metrics) == len({r.id for r in zoo.models() if r.cell_id.startswith(group + "-")})
        for i, row in metrics.iterrows():
            stored = zoo.load_state(row["model_id"], 2)
            assert np.array_equal(weights[0][i], stored["1.weight"].numpy())
            assert np.array_equal(biases[-1][i], stored["3.bias"].numpy())
            assert row["test_accuracy"] == zoo.results([row["model_id"]]).set_index("epoch").loc[2, "test_acc"]
            assert row["config.model.width"] == int(group[1:])
        layout = pd.read_csv(tmp_path / "out" / group / "layout.csv")
        assert list(layout.varname) == ["1/kernel:0", "1/bias:0", "3/kernel:0", "3/bias:0"]
        assert ast.literal_eval(layout["shape"][0]) == (64, int(group[1:]))  # TensorFlow: in x out
    with gzip.open(tmp_path / "out" / "w4" / "metrics.csv.gz") as handle:
        assert b"step" in handle.readline()


def test_splits_keep_models_whole_and_cross_phases_and_loads(zoo_copy, tmp_path):
    spec, store = zoo_copy
    export_weights(store.zoo(spec), tmp_path / "out", "wsl", [0, 1, 2], show_progress=False)
    _, metrics = read_wsl(tmp_path / "out")
    splits = json.loads((tmp_path / "out" / "splits.json").read_text())
    for name, split in splits.items():
        sides = [set(metrics.model_id.iloc[split[part]]) for part in ("train", "val", "test")]
        assert not (sides[0] & sides[1] or sides[0] & sides[2] or sides[1] & sides[2]), name
        for part in ("train", "val", "test"):  # every epoch of a model is on the same side
            assert all(len(metrics[metrics.model_id == m]) == 3 for m in metrics.model_id.iloc[split[part]])
    assert len(splits["random"]["test"]) + len(splits["random"]["val"]) + len(splits["random"]["train"]) == len(metrics)
    test_loads = set(metrics.load.iloc[splits["cross_load"]["test"]])
    assert test_loads == {16} and set(metrics.load.iloc[splits["cross_load"]["train"]]) == {4}
    if "cross_phase" in splits:
        assert set(metrics.phase.iloc[splits["cross_phase"]["test"]]) <= {"IV-A", "IV-B"}
        assert set(metrics.phase.iloc[splits["cross_phase"]["train"]]) <= {"I", "II", "III"}
    index = pd.read_csv(tmp_path / "out" / "index.csv")
    for group in index.itertuples():  # each folder's splits are the global ones restricted to it
        local = json.loads((tmp_path / "out" / group.folder / "splits.json").read_text())
        for name, split in splits.items():
            rows = range(group.first_row, group.first_row + group.rows)
            assert local[name]["test"] == [r - group.first_row for r in split["test"] if r in rows]


def test_an_interrupted_export_resumes_without_rewriting_finished_groups(zoo_copy, tmp_path, monkeypatch):
    spec, store = zoo_copy
    zoo = store.zoo(spec)
    out = tmp_path / "out"
    real = export_module._write_matrix
    calls = []

    def interrupted(zoo, rows, group, columns, path, show_progress):
        calls.append(group.name)
        if len(calls) == 2:
            path.write_bytes(b"half a matrix")
            raise KeyboardInterrupt
        real(zoo, rows, group, columns, path, show_progress)

    monkeypatch.setattr(export_module, "_write_matrix", interrupted)
    with pytest.raises(KeyboardInterrupt):
        export_weights(zoo, out, "wsl", show_progress=False)
    # the finished group, no index and no half folder; the export says it is incomplete
    assert sorted(p.name for p in out.iterdir()) == ["export.json", "w4"]
    assert json.loads((out / "export.json").read_text())["complete"] is False
    finished = (out / "w4" / "weights.npy").stat().st_ino
    monkeypatch.setattr(export_module, "_write_matrix", real)
    report = export_weights(zoo, out, "wsl", show_progress=False)
    assert report.written == ["w16"] and (out / "w4" / "weights.npy").stat().st_ino == finished
    assert sorted(read_wsl(out)[0]) == sorted((r.id, spec.metric_epoch) for r in zoo.models())
    assert json.loads((out / "export.json").read_text())["complete"] is True
    manifest = json.loads((out / "w16" / "manifest.json").read_text())
    manifest["rows"][0][2] = "0" * 64  # as if that model had been retrained since
    (out / "w16" / "manifest.json").write_text(json.dumps(manifest))
    assert export_weights(zoo, out, "wsl", show_progress=False).written == ["w16"]
    with pytest.raises(UsageError, match="another export"):
        export_weights(zoo, out, "unterthiner", show_progress=False)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="not empty"):
        export_weights(zoo, tmp_path / "other", "wsl", show_progress=False)


def test_the_command_line_exports_and_refuses_bad_epochs_in_one_line(zoo_copy, tmp_path):
    from conftest import zoobench_cli

    spec, store = zoo_copy
    done = zoobench_cli("zoo", "export", spec.source, str(tmp_path / "out"), "--format", "unterthiner",
                        "--epochs", "all", home=store.home)
    assert done.returncode == 0 and "shape groups (w4, w16)" in done.stdout.replace("\n", " "), done.stderr
    assert (tmp_path / "out" / "w16" / "idcs.csv").is_file()
    (tmp_path / "a_file").write_text("")
    for folder, epochs, fragment in [
            ("bad", "x", "--epochs expects epochs such as 11,12,15 or 'all', got 'x'"),
            ("bad", "9", "stores no checkpoints at epochs [9]"),
            ("a_file/sub", "all", "cannot create the folder")]:
        bad = zoobench_cli("zoo", "export", spec.source, str(tmp_path / folder), "--format", "wsl", "--epochs", epochs,
                           home=store.home)
        lines = bad.stderr.strip().splitlines()
        assert bad.returncode == 2 and len(lines) == 1 and fragment in lines[0], bad.stderr


def test_diverged_models_have_no_rows(tmp_path):
    from conftest import QUIET, write_spec
    from zoobench.errors import ZoobenchError
    from zoobench.spec import read_spec_file
    from zoobench.train.generate import generate

    spec = read_spec_file(write_spec(tmp_path, seeds=(0,), lr=1e4, widths=(4,), batch_sizes=(64,)))
    store = Store(tmp_path / "home")
    generate(spec, store, execution=QUIET)
    assert {r.status for r in store.zoo(spec).models()} == {"diverged"}
    with pytest.raises(ZoobenchError, match="at epochs \\[0\\]: nothing to export \\(1 of 1 stored models diverged\\)"):
        export_weights(store.zoo(spec), tmp_path / "out", "wsl", [0], show_progress=False)
