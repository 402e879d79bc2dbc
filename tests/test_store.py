import json
import os

import pytest

from conftest import QUIET, write_spec
from zoobench.errors import UsageError, ZoobenchError
from zoobench.train.generate import generate
from zoobench.spec import read_spec_file
from zoobench.store import Store


@pytest.fixture
def trained(tmp_path):
    spec = read_spec_file(write_spec(tmp_path, seeds=(0,), widths=(4,), batch_sizes=(64, 128)))
    store = Store(tmp_path / "home")
    report = generate(spec, store, execution=QUIET)
    assert len(report.trained) == 2
    return spec, store, store.zoo(spec)


def test_listing_models_cells_and_results(trained):
    spec, store, zoo = trained
    records = zoo.models()
    assert [r.id for r in records] == ["w4-bs128-s0", "w4-bs64-s0"]
    assert {(r.load, r.temperature, r.seed, r.status) for r in records} == {(4, 64, 0, "ok"), (4, 128, 0, "ok")}
    frame = zoo.results()
    assert len(frame) == 2 * (spec.training.epochs + 1)
    assert set(frame["cell_id"]) == {"w4-bs64", "w4-bs128"}
    cells = zoo.cells().set_index("cell_id")
    assert cells.loc["w4-bs64", "finished"] == 1 and cells.loc["w4-bs64", "diverged"] == 0
    assert len(cells) == 2 and set(cells["seeds"]) == {1}
    assert [z.spec.fingerprint for z in store.zoos()] == [spec.fingerprint]
    assert store.resolve("tiny").fingerprint == spec.fingerprint  # a zoo known only to the store
    with pytest.raises(UsageError) as error:  # each valid name once, built-in or stored
        store.resolve("tinny")
    assert str(error.value).count("'tiny'") == 1 and str(error.value).count("digits_mlp") == 1


def test_nothing_half_written_is_visible(trained, tmp_path):
    _, _, zoo = trained
    staging = zoo.path / ".staging" / "w4-bs64-s1-123-abc"
    staging.mkdir(parents=True)
    (staging / "params.json").write_text("{}")
    unfinished = zoo.models_dir / "w8-bs64-s0"
    unfinished.mkdir()
    (unfinished / "params.json").write_text("{}")
    assert [r.id for r in zoo.models()] == ["w4-bs128-s0", "w4-bs64-s0"]
    assert "missing or unreadable" in zoo.problem("w8-bs64-s0")
    assert not list(zoo.path.rglob(".tmp-*"))


def test_truncated_checkpoint_is_detected_refused_and_retrained(trained):
    spec, store, zoo = trained
    weights = zoo.models_dir / "w4-bs64-s0" / "checkpoint_000002" / "model.safetensors"
    size = weights.stat().st_size
    with open(weights, "r+b") as handle:
        handle.truncate(size // 2)
    assert "truncated" in zoo.problem("w4-bs64-s0")
    assert [r.id for r in zoo.models()] == ["w4-bs128-s0"]
    with pytest.raises(ZoobenchError, match="damaged.*re-run `zoobench zoo generate tiny`"):
        zoo.load_model("w4-bs64-s0")
    report = generate(spec, store, execution=QUIET)
    assert report.trained == ["w4-bs64-s0"] and "truncated" in report.damaged["w4-bs64-s0"]
    assert weights.stat().st_size == size
    assert zoo.load_model("w4-bs64-s0") is not None


def test_verify_catches_a_flipped_byte_that_sizes_cannot(trained):
    _, _, zoo = trained
    assert zoo.verify() == {}
    weights = zoo.models_dir / "w4-bs128-s0" / "checkpoint_000000" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    assert zoo.verify() == {"w4-bs128-s0": "checkpoint_000000/model.safetensors does not match its recorded hash"}


def test_corrupt_checkpoint_with_intact_size_is_a_clear_error(trained):
    _, _, zoo = trained
    record = zoo.record("w4-bs64-s0")
    weights = record.path / "checkpoint_000002" / "model.safetensors"
    weights.write_bytes(b"\0" * weights.stat().st_size)  # same size, not a safetensors file any more
    with pytest.raises(ZoobenchError, match="is corrupt"):
        zoo.load_state("w4-bs64-s0")


def test_missing_model_and_epoch_are_usage_errors(trained):
    _, _, zoo = trained
    with pytest.raises(UsageError, match="not in zoo tiny"):
        zoo.load_model("w8-bs64-s0")
    with pytest.raises(UsageError, match="no checkpoint at epoch 5; stored: 0, 1, 2"):
        zoo.load_state("w4-bs64-s0", 5)


def test_a_second_writer_is_refused(trained):
    _, _, zoo = trained
    with zoo.writing():
        with pytest.raises(ZoobenchError, match=f"being written by another zoobench process \\(pid {os.getpid()}\\)"):
            with zoo.writing():
                pass


def test_params_json_is_enough_to_rebuild_and_retrain(trained):
    spec, _, zoo = trained
    params = json.loads((zoo.models_dir / "w4-bs64-s0" / "params.json").read_text())
    assert params["fingerprint"] == spec.fingerprint
    assert params["recipe"]["training"]["batch_size"] == 64
    assert params["recipe"]["model"]["options"]["width"] == 4
    assert params["load"] == {"field": "model.width", "value": 4}
    assert {"zoobench", "torch", "python"} <= set(params["versions"])
