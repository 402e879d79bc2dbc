"""Runtimes (device, precision, memory format, compilation) and how the local executor spreads units over GPUs.

No GPU is needed: GPU layout is checked with torch's CUDA queries faked in the parent process, and
the workers report which GPU they were given without touching CUDA.
"""

import functools
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from conftest import write_spec
from fabricate import fabricate
from zoobench.errors import UsageError
from zoobench.execution.local import LocalExecutor
from zoobench.train.generate import generate
from zoobench.execution import Execution, Runtime
from zoobench.spec import load_spec
from zoobench.store import Store


@dataclass(frozen=True)
class Crowded:
    """A unit that, when `big`, runs out of GPU memory whenever another unit runs beside it (or
    `always`); returns the units it saw beside it."""

    label: str
    folder: str
    big: bool
    always: bool = False
    size = 1

    def __call__(self) -> list[str]:
        marker = Path(self.folder) / self.label
        marker.touch()
        try:
            time.sleep(0.4)
            others = sorted(p.name for p in Path(self.folder).iterdir() if p.name != self.label)
            if self.big and (others or self.always):
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 9.00 GiB (GPU 0; 79.1 GiB total)")
            return others
        finally:
            marker.unlink()


@dataclass(frozen=True)
class VisibleGpu:
    """A unit that reports which GPU its worker may see."""

    label: str
    size = 1

    def __call__(self) -> str | None:
        time.sleep(0.5)  # long enough that every worker gets a unit
        return os.environ.get("CUDA_VISIBLE_DEVICES")


@dataclass(frozen=True)
class WorkerId:
    """A unit that reports which process ran it (or fails)."""

    label: str
    fail: bool = False
    size = 1

    def __call__(self) -> int:
        time.sleep(0.3)
        if self.fail:
            raise ValueError("this unit fails")
        return os.getpid()


def test_an_executor_keeps_its_workers_between_runs_and_replaces_them_after_an_error():
    """The stages of `zoobench run` share one executor; a worker costs seconds to start."""
    executor = LocalExecutor(2, device="cpu")
    units = [WorkerId(str(i)) for i in range(4)]
    try:
        first = {pid for _, pid in executor.run(units, "pids", show_progress=False)}
        second = {pid for _, pid in executor.run(units, "pids", show_progress=False)}
        assert len(first | second) <= 2 and os.getpid() not in first
        with pytest.raises(ValueError, match="this unit fails"):
            list(executor.run([WorkerId("bad", fail=True), WorkerId("ok")], "fails", show_progress=False))
        after = {pid for _, pid in executor.run(units, "pids", show_progress=False)}
        assert after.isdisjoint(first | second)
    finally:
        executor.close()


@pytest.fixture
def two_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)


def test_units_on_gpus_get_several_workers_per_gpu_each_seeing_one(two_gpus):
    executor = LocalExecutor(device="cuda", units_per_gpu=2)
    assert executor.layout() == (4, ["0", "1"])
    assert LocalExecutor(3, device="cuda", units_per_gpu=2).layout() == (3, ["0", "1"])  # --workers caps
    assert LocalExecutor(3, device="cpu").layout() == (3, [])
    assert LocalExecutor(device="cuda:1", units_per_gpu=2).layout() == (2, [])  # one GPU, named by the units
    units = [VisibleGpu(str(i)) for i in range(8)]
    seen = [gpu for _, gpu in executor.run(units, "gpus", show_progress=False)]
    assert sorted(seen) == ["0"] * 4 + ["1"] * 4  # round robin: two workers on each GPU


def test_gpu_workers_keep_to_the_gpus_the_parent_may_see(two_gpus, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5,7")
    executor = LocalExecutor(device="auto", units_per_gpu=1)
    assert executor.layout() == (2, ["5", "7"])
    seen = {gpu for _, gpu in executor.run([VisibleGpu(str(i)) for i in range(4)], "gpus", show_progress=False)}
    assert seen == {"5", "7"}


def test_a_unit_out_of_gpu_memory_beside_others_is_retried_with_the_gpu_to_itself(two_gpus, monkeypatch, tmp_path):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    units = [Crowded(name, str(tmp_path), name == "big") for name in ("a", "b", "big", "c", "d", "e")]
    seen = dict(LocalExecutor(device="cuda", units_per_gpu=3).run(units, "oom", show_progress=False))
    assert {unit.label for unit in seen} == {"a", "b", "big", "c", "d", "e"}
    assert [others for unit, others in seen.items() if unit.label == "big"] == [[]]  # it ran alone
    assert any(others for unit, others in seen.items() if unit.label != "big")  # the others did share the GPU


def test_a_unit_out_of_gpu_memory_alone_is_a_one_line_error(two_gpus, monkeypatch, tmp_path):
    from zoobench.execution import OutOfDeviceMemory

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    units = [Crowded(name, str(tmp_path), name == "big", True) for name in ("a", "big")]
    with pytest.raises(OutOfDeviceMemory, match=r"^out of GPU memory: CUDA out of memory. Tried to allocate 9.00 GiB"):
        list(LocalExecutor(device="cuda", units_per_gpu=2).run(units, "oom", show_progress=False))


def test_automatic_choices_per_device(two_gpus, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert Runtime().resolved() == Runtime("cuda", "bf16", True, False)
    assert Runtime("cuda", "fp32", False).resolved() == Runtime("cuda", "fp32", False, False)
    assert Runtime("cpu").resolved() == Runtime("cpu", "fp32", False, False)


def test_remote_workers_decide_their_own_device(monkeypatch):
    """A Ray head without a GPU can send "cuda" units to GPU workers; locally that is checked at once."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    remote = type("Remote", (), {"remote": True})()
    assert Execution(runtime=Runtime("cuda")).unit_runtime(remote) == Runtime("cuda")  # the worker resolves it
    assert Execution(runtime=Runtime("auto")).unit_runtime(remote) == Runtime("cpu", "fp32", False)
    with pytest.raises(UsageError, match="torch sees no CUDA GPU here"):
        Execution(runtime=Runtime("cuda")).unit_runtime(LocalExecutor())


@pytest.mark.parametrize("field, value, message", [("device", "gpu", "unknown device 'gpu'; valid: auto, cpu"),
                                                   ("precision", "fp16", "unknown precision 'fp16'; valid: auto")])
def test_bad_runtime_names_say_what_is_valid(field, value, message):
    with pytest.raises(UsageError, match=message):
        Runtime(**{field: value})


@pytest.mark.parametrize("flags, message", [
    (("--precision", "fp8"), "error: unknown precision 'fp8'; valid: auto, fp32, bf16"),
    (("--device", "cuda"), "error: device 'cuda' asked for, but torch sees no CUDA GPU here; use --device cpu")])
def test_bad_runtime_flags_are_one_line_errors(tmp_path, flags, message):
    from conftest import zoobench_cli

    if flags[1] == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    result = zoobench_cli("zoo", "generate", str(write_spec(tmp_path)), *flags, home=tmp_path / "home")
    assert result.returncode == 2 and result.stderr.strip().startswith(message), result.stderr


def micro_resnet(tmp_path):
    fabricate("cifar10", tmp_path / "data", n_train=32, n_test=16)
    return load_spec("cifar10_r18").with_overrides({
        "training.epochs": 1, "training.checkpoint_epochs": [1], "evaluation.epoch": 1, "training.lr": 0.002,
        "grid.load.values": [2], "grid.temperature.values": [16], "grid.seeds": [0, 1]})


def train(tmp_path, spec, name, runtime, fused=True):
    store = Store(tmp_path / name)
    report = generate(spec, store, fused=fused,
                      execution=Execution(workers=1, runtime=runtime, data_root=tmp_path / "data", progress=False))
    assert len(report.trained) == 2, report
    return store.zoo(spec)


@pytest.mark.parametrize("fused", [True, False])
def test_channels_last_and_compiled_training_learn_the_same_weights(tmp_path, monkeypatch, fused):
    """channels_last changes only the memory layout, compilation only how the step runs (here with
    dynamo's eager backend, so the test needs no C++ compiler): both give the same models, stored in
    the usual format, and each model's marker says how it was trained."""
    spec = micro_resnet(tmp_path)
    plain = train(tmp_path, spec, "plain", Runtime("cpu"), fused)
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="eager"))
    tuned = train(tmp_path, spec, "tuned", Runtime("cpu", "fp32", True, True), fused)
    for record in plain.models():
        alone, tuned_state = plain.load_state(record.id), tuned.load_state(record.id)
        for name, value in alone.items():
            torch.testing.assert_close(tuned_state[name], value, atol=1e-4, rtol=1e-4, msg=name)
        marker = json.loads((tuned.models_dir / record.id / "done.json").read_text())
        assert marker["runtime"] == {"device": "cpu", "precision": "fp32", "channels_last": True, "compile": True}


def test_bf16_training_stays_within_bf16_rounding_of_fp32(tmp_path):
    spec = micro_resnet(tmp_path)
    fp32 = train(tmp_path, spec, "fp32", Runtime("cpu", "fp32"))
    bf16 = train(tmp_path, spec, "bf16", Runtime("cpu", "bf16"))
    for record in fp32.models():
        full, half = fp32.load_state(record.id), bf16.load_state(record.id)
        assert all(half[name].dtype == value.dtype for name, value in full.items())  # stored in fp32
        moved = max((half[n] - v).abs().max().item() for n, v in full.items() if v.is_floating_point())
        assert 0 < moved < 0.05  # bf16 really ran (not bit-identical) and stayed close (weights are O(1))
