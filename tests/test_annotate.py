import json

import pytest

from conftest import QUIET, write_spec
from zoobench.landscape.annotate import annotate
from zoobench.landscape.annotations import Annotations
from zoobench.errors import UsageError
from zoobench.train.generate import generate
from zoobench.spec import read_spec_file
from zoobench.store import Store
from zoobench.execution import Execution


@pytest.fixture
def zoo(tmp_path):
    spec = read_spec_file(write_spec(tmp_path, widths=(4, 16), batch_sizes=(32,), seeds=(0, 1), epochs=3))
    store = Store(tmp_path / "home")
    generate(spec, store, execution=QUIET)
    return spec, store


def test_eval_annotation_is_clean_and_resumable(zoo):
    spec, store = zoo
    first = annotate(spec, store, metrics=["eval"], execution=QUIET)
    assert first.done == {"eval": 2} and first.current == {"eval": 0}
    again = annotate(spec, store, metrics=["eval"], execution=QUIET)
    assert again.done == {"eval": 0} and again.current == {"eval": 2}
    annotations = Annotations(store.zoo(spec), "eval")
    models = annotations.models().set_index("model_id")
    # the clean train accuracy is not the running one logged during training, but the test numbers agree
    results = store.zoo(spec).results().query("epoch == 3").set_index("model_id")
    assert models.loc["w16-bs32-s0", "test_acc"] == pytest.approx(results.loc["w16-bs32-s0", "test_acc"])
    assert models.loc["w16-bs32-s0", "gap"] == pytest.approx(
        models.loc["w16-bs32-s0", "train_acc"] - models.loc["w16-bs32-s0", "test_acc"])
    cells = annotations.cells().set_index("cell_id")
    assert cells.loc["w4-bs32", "train_loss"] == pytest.approx(
        models.query("cell_id == 'w4-bs32'")["train_loss"].mean())


def test_settings_epochs_and_retrained_models_invalidate_annotations(zoo):
    spec, store = zoo
    annotate(spec, store, metrics=["eval"], execution=QUIET)
    assert annotate(spec, store, metrics=["eval"], epoch=1, execution=QUIET).done == {"eval": 2}
    zoo_store = store.zoo(spec)
    weights = zoo_store.models_dir / "w4-bs32-s1" / "checkpoint_000003" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:50])
    generate(spec, store, execution=QUIET)  # retrains the damaged model, same seed, same weights
    again = annotate(spec, store, metrics=["eval"], execution=QUIET)
    assert again.done == {"eval": 0}  # deterministic retraining gives the same checkpoint hash
    stored = json.loads(next(Annotations(zoo_store, "eval").folder.glob("w4-bs32.json")).read_text())
    stored["inputs"]["w4-bs32-s1"] = "something else"
    next(Annotations(zoo_store, "eval").folder.glob("w4-bs32.json")).write_text(json.dumps(stored))
    assert annotate(spec, store, metrics=["eval"], execution=QUIET).done == {"eval": 1}


def test_bad_requests_are_usage_errors(zoo, tmp_path):
    spec, store = zoo
    with pytest.raises(UsageError, match="unknown metric 'hessain'"):
        annotate(spec, store, metrics=["hessain"], execution=Execution(progress=False))
    with pytest.raises(UsageError, match="epoch 2 is not stored"):
        annotate(spec, store, metrics=["eval"], epoch=2, execution=Execution(progress=False))
    with pytest.raises(UsageError, match="no finished models"):
        annotate(spec, Store(tmp_path / "empty"), metrics=["eval"], execution=Execution(progress=False))


def test_all_four_metrics_annotate_and_label_every_cell(zoo):
    from zoobench.landscape.phases import phase_table

    spec, store = zoo
    spec = spec.with_overrides({"annotation.mc.epochs": 1, "annotation.hessian.max_hvps": 30})
    report = annotate(spec, store, execution=QUIET)
    assert report.done == {"eval": 2, "hessian": 2, "cka": 2, "mc": 2}
    table = phase_table(store.zoo(spec)).set_index("cell_id")
    for column in ["train_loss", "test_acc", "gap", "hessian_top_eigenvalue", "hessian_trace", "hessian_log_trace",
                   "hessian_trace_hvps", "cka", "mc", "linear_mc"]:
        assert table[column].notna().all(), column
    assert (table["hessian_trace_hvps"] <= 30).all() and (table["cka_pairs"] == 1).all()
    assert set(table["phase"]) <= {"I", "II", "III", "IV-A", "IV-B"}
    assert all(str(spec.phases.mc) in reason or "mc" in reason for reason in table["reason"])


def test_cells_whose_seeds_diverged_get_their_own_label(tmp_path):
    from zoobench.landscape.phases import phase_table

    spec = read_spec_file(write_spec(tmp_path, lr=1e4, widths=(4,), batch_sizes=(64,), seeds=(0, 1)))
    store = Store(tmp_path / "home")
    assert len(generate(spec, store, execution=QUIET).diverged) == 2
    annotate(spec, store, execution=QUIET)
    row = phase_table(store.zoo(spec)).iloc[0]
    assert row["phase"] == "diverged" and row["reason"] == "2 seed(s) diverged"
