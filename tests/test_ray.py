"""The Ray executor runs the same units as the local one and leaves the same store; only its driver writes
the store (the tests of that run the task wrapper inline and need no Ray)."""

import json
from pathlib import Path

import pytest

from conftest import QUIET, write_spec
from zoobench.store import atomic
from zoobench.train.generate import generate
from zoobench.execution.ray_executor import _install, _run_unit
from zoobench.bench.runner import run
from zoobench.spec import load_spec
from zoobench.execution import Execution
from zoobench.store import MARKER, WEIGHTS, ModelWriter, Store, checkpoint_name


@pytest.fixture(scope="module")
def ray_executor():
    ray = pytest.importorskip("ray")
    from zoobench.execution.ray_executor import RayExecutor

    executor = RayExecutor(num_cpus=2)  # a local Ray cluster of 2 CPUs, started here
    yield executor
    ray.shutdown()


class InlineTasks:
    """Runs each unit as a Ray task would (`_run_unit`), in this process, then installs its files as the
    Ray driver does; checks that the unit itself left the store exactly as it was."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.installed: list[Path] = []

    def run(self, units, title, unit_name="models", show_progress=True):
        for unit in units:
            before = snapshot(self.home)
            returned = _run_unit(unit)
            assert snapshot(self.home) == before, f"unit {unit.label} wrote into the store"
            self.installed += returned[1]
            yield unit, _install(returned)


def snapshot(home: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under `home` with its size and modification time: any write changes it."""
    return {str(path.relative_to(home)): (path.stat().st_size, path.stat().st_mtime_ns) for path in home.rglob("*")}


def files(home: Path) -> list[str]:
    return sorted(str(path.relative_to(home)) for path in home.rglob("*") if path.is_file())


def weights(zoo) -> dict[str, dict]:
    return {r.id: {name: meta["sha256"] for name, meta in json.loads((r.path / MARKER).read_text())["files"].items()
                   if name.endswith(".safetensors")} for r in zoo.models()}


def table(report):
    return report.table().drop(columns=["zoo"]).sort_values("unit").reset_index(drop=True)


def test_tasks_write_nothing_and_the_driver_installs_what_a_local_run_writes(tmp_path):
    spec = load_spec(str(write_spec(tmp_path, epochs=2, seeds=(0, 1), widths=(4, 8), batch_sizes=(64,))))
    local, driven = Store(tmp_path / "local"), Store(tmp_path / "driven")
    inline = InlineTasks(driven.home)
    reports = {"local": run("ensemble", spec, local, execution=QUIET),
               "driven": run("ensemble", spec, driven, execution=Execution(progress=False, executor=inline))}
    kinds = {path.relative_to(driven.zoo(spec).path).parts[0] for path in inline.installed}
    assert kinds == {"models", "annotations", "results"}  # training, annotation and method units all ran inline
    assert files(driven.home) == files(local.home)
    assert driven.zoo(spec).verify() == {}
    assert weights(driven.zoo(spec)) == weights(local.zoo(spec))  # bit-identical checkpoints
    assert table(reports["driven"]).equals(table(reports["local"]))
    again = run("ensemble", spec, driven, execution=Execution(progress=False, executor=inline))
    assert (again.ran, again.current, again.prepared) == (0, 2, [])  # resume is the same as local


def test_install_replaces_a_damaged_model_folder(tmp_path):
    spec = load_spec(str(write_spec(tmp_path, epochs=1, seeds=(0,), widths=(4,), batch_sizes=(64,))))
    store = Store(tmp_path / "home")
    generate(spec, store, execution=QUIET)
    zoo = store.zoo(spec)
    original = weights(zoo)
    checkpoint = zoo.models_dir / "w4-bs64-s0" / checkpoint_name(1) / WEIGHTS
    checkpoint.write_bytes(checkpoint.read_bytes()[:100])
    inline = InlineTasks(store.home)
    report = generate(spec, store, execution=Execution(progress=False, executor=inline))
    assert report.trained == ["w4-bs64-s0"] and "truncated" in report.damaged["w4-bs64-s0"]
    assert zoo.verify() == {}
    assert weights(zoo) == original
    assert list(zoo.path.glob(".*/*")) == []  # nothing left in staging or trash


def test_a_failing_task_leaves_nothing_anywhere(tmp_path):
    spec = load_spec(str(write_spec(tmp_path)))
    store = Store(tmp_path / "home")
    zoo = store.zoo(spec)
    zoo.path.mkdir(parents=True)
    scratch = {}

    def unit() -> None:
        writer = ModelWriter(zoo, "w4-bs64-s0", {"cell_id": "w4-bs64"})
        writer.log_epoch({"epoch": 0})
        atomic.write_json(zoo.path / "annotations" / "eval" / "w4-bs64.json", {})
        scratch["folder"] = writer.folder
        raise RuntimeError("the node went down")

    with pytest.raises(RuntimeError, match="the node went down"):
        _run_unit(unit)
    assert files(store.home) == [] and not scratch["folder"].exists()
    assert zoo.path not in scratch["folder"].parents  # the writer wrote into the task's scratch folder


def test_ray_generation_and_method_run_equal_the_local_executor(ray_executor, tmp_path):
    spec = load_spec(str(write_spec(tmp_path, epochs=2, seeds=(0, 1), widths=(4, 8), batch_sizes=(64,))))
    stores = {"local": Store(tmp_path / "local"), "ray": Store(tmp_path / "ray")}
    reports = {}
    for name, store in stores.items():
        execution = Execution(workers=1, progress=False, executor=ray_executor if name == "ray" else "local")
        generation = generate(spec, store, execution=execution)
        assert sorted(generation.trained) == ["w4-bs64-s0", "w4-bs64-s1", "w8-bs64-s0", "w8-bs64-s1"]
        reports[name] = run("ensemble", spec, store, execution=execution)
    zoos = {name: store.zoo(spec) for name, store in stores.items()}
    assert weights(zoos["ray"]) == weights(zoos["local"])  # bit-identical checkpoints
    assert table(reports["ray"]).equals(table(reports["local"]))
    again = run("ensemble", spec, stores["ray"], execution=Execution(progress=False, executor=ray_executor))
    assert (again.ran, again.current, again.prepared) == (0, 2, [])  # resume is the same as local
