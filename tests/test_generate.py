import os
import signal
import subprocess
import sys
import time

from conftest import QUIET, write_spec, zoobench_cli
from zoobench.train.generate import generate
from zoobench.spec import read_spec_file
from zoobench.store import Store
from zoobench.execution import Execution


def test_rerun_trains_nothing_and_restrictions_choose_cells(tmp_path):
    spec = read_spec_file(write_spec(tmp_path))
    store = Store(tmp_path / "home")
    first = generate(spec, store, loads=[8], seeds=[1], execution=QUIET)
    assert sorted(first.trained) == ["w8-bs128-s1", "w8-bs64-s1"]
    again = generate(spec, store, loads=[8], seeds=[1], execution=QUIET)
    assert again.trained == [] and again.skipped == 2
    everything = generate(spec, store, execution=Execution(workers=2, progress=False))
    assert len(everything.trained) == 6 and everything.skipped == 2
    assert len(store.zoo(spec).models()) == 8


def test_parallel_and_inline_generation_store_the_same_models(tmp_path):
    spec = read_spec_file(write_spec(tmp_path, widths=(4,), seeds=(0,)))
    inline, pooled = Store(tmp_path / "a"), Store(tmp_path / "b")
    generate(spec, inline, execution=QUIET)
    generate(spec, pooled, execution=Execution(workers=2, progress=False))
    for model_id in ["w4-bs64-s0", "w4-bs128-s0"]:
        assert inline.zoo(spec).results([model_id])["test_loss"].tolist() == \
            pooled.zoo(spec).results([model_id])["test_loss"].tolist()


def test_kill_9_mid_generation_loses_only_models_in_flight(tmp_path):
    path = write_spec(tmp_path, widths=(4, 8, 16), batch_sizes=(16, 32, 64), seeds=(0, 1), epochs=6)
    spec = read_spec_file(path)
    home = tmp_path / "home"
    zoo = Store(home).zoo(spec)
    env = dict(os.environ, ZOOBENCH_HOME=str(home))
    process = subprocess.Popen([sys.executable, "-m", "zoobench", "zoo", "generate", str(path), "--workers", "2"],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while len(zoo.models()) < 3 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    time.sleep(1.0)  # workers die with their parent: nothing may appear after the kill
    finished = {r.id: (r.path / "done.json").stat().st_mtime_ns for r in zoo.models()}
    time.sleep(1.0)
    assert {r.id for r in zoo.models()} == set(finished)
    assert 3 <= len(finished) < 18, "the kill must land mid-generation"

    rerun = zoobench_cli("zoo", "generate", str(path), "--workers", "2", home=home)
    assert rerun.returncode == 0, rerun.stderr
    assert f"trained {18 - len(finished)} models" in " ".join(rerun.stdout.split())
    models = zoo.models()
    assert len(models) == 18
    for record in models:
        if record.id in finished:  # not retrained
            assert (record.path / "done.json").stat().st_mtime_ns == finished[record.id]
        assert zoo.load_model(record.id) is not None
    assert not (zoo.path / ".staging").exists() or not any((zoo.path / ".staging").iterdir())


def test_a_failing_model_is_reported_and_the_others_still_train(tmp_path, monkeypatch):
    import zoobench.train.loop as training
    from zoobench.errors import ZoobenchError

    real = training.train_seeds

    def flaky(spec, trainer, keys, zoo, runtime):
        if keys[0].id == "w4-bs64-s0":
            raise ZoobenchError("disk full")
        return real(spec, trainer, keys, zoo, runtime)

    monkeypatch.setattr(training, "train_seeds", flaky)
    spec = read_spec_file(write_spec(tmp_path, widths=(4, 8), batch_sizes=(64,), seeds=(0, 1)))
    report = generate(spec, Store(tmp_path / "home"), fused=False, execution=QUIET)
    assert report.failed == {"w4-bs64-s0": "disk full"}
    assert report.trained == ["w4-bs64-s1", "w8-bs64-s0", "w8-bs64-s1"]  # the rest of its cell too


def test_ctrl_c_stops_workers_and_says_how_to_resume(tmp_path):
    path = write_spec(tmp_path, widths=(4, 8, 16), batch_sizes=(16, 32), seeds=(0, 1), epochs=6)
    home = tmp_path / "home"
    zoo = Store(home).zoo(read_spec_file(path))
    process = subprocess.Popen([sys.executable, "-m", "zoobench", "zoo", "generate", str(path), "--workers", "2"],
                               env=dict(os.environ, ZOOBENCH_HOME=str(home)), stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not zoo.models() and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130
    assert stderr.strip() == "interrupted: finished work is kept; run the same command again to resume"
    kept = {r.id for r in zoo.models()}
    time.sleep(1.0)
    assert {r.id for r in zoo.models()} == kept and 1 <= len(kept) < 12
