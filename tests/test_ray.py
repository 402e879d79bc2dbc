"""The Ray executor runs the same units as the local one and leaves the same store (needs zoobench[ray])."""

import json

import pytest

from conftest import write_spec
from zoobench.generate import generate
from zoobench.runner import run
from zoobench.spec import load_spec
from zoobench.store import MARKER, Store

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def ray_executor():
    from zoobench.ray_executor import RayExecutor

    executor = RayExecutor(num_cpus=2)  # a local Ray cluster of 2 CPUs, started here
    yield executor
    ray.shutdown()


def weights(zoo) -> dict[str, dict]:
    return {r.id: {name: meta["sha256"] for name, meta in json.loads((r.path / MARKER).read_text())["files"].items()
                   if name.endswith(".safetensors")} for r in zoo.models()}


def test_ray_generation_and_method_run_equal_the_local_executor(ray_executor, tmp_path):
    spec = load_spec(str(write_spec(tmp_path, epochs=2, seeds=(0, 1), widths=(4, 8), batch_sizes=(64,))))
    stores = {"local": Store(tmp_path / "local"), "ray": Store(tmp_path / "ray")}
    reports = {}
    for name, store in stores.items():
        executor = ray_executor if name == "ray" else None
        generation = generate(spec, store, workers=1, show_progress=False, executor=executor)
        assert sorted(generation.trained) == ["w4-bs64-s0", "w4-bs64-s1", "w8-bs64-s0", "w8-bs64-s1"]
        reports[name] = run("ensemble", spec, store, workers=1, show_progress=False, executor=executor)
    zoos = {name: store.zoo(spec) for name, store in stores.items()}
    assert weights(zoos["ray"]) == weights(zoos["local"])  # bit-identical checkpoints
    tables = {name: report.table().drop(columns=["zoo"]).sort_values("unit").reset_index(drop=True)
              for name, report in reports.items()}
    assert tables["ray"].equals(tables["local"])
    again = run("ensemble", spec, stores["ray"], show_progress=False, executor=ray_executor)
    assert (again.ran, again.current, again.prepared) == (0, 2, [])  # resume is the same as local
