"""How a stage runs its units: one settings object for generate, annotate and run.

`Execution` gathers what every stage needs to know about where its units run (how many worker
processes, which executor, the training runtime, the data root, whether to show progress), so the
stages take keyword arguments for what they do and this one object for how.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator, Protocol, Sequence

from zoobench.errors import UsageError
from zoobench.execution.local import UNITS_PER_GPU, LocalExecutor
from zoobench.execution.runtime import Runtime
from zoobench.execution.units import Unit

EXECUTORS = ("local", "ray")


class Executor(Protocol):
    """Runs units and yields ``(unit, result)`` as they finish; a unit's exception propagates."""

    def run(self, units: Sequence[Unit], title: str, unit_name: str = "models",
            show_progress: bool = True) -> Iterator[tuple[Unit, Any]]: ...


def make_executor(kind: str = "local", workers: int | None = None, device: str = "auto",
                  units_per_gpu: int = UNITS_PER_GPU, address: str | None = None,
                  gpus_per_unit: float = 0.0) -> Executor:
    """An executor by name: "local" (worker processes on this machine: `workers`, default one per core,
    or `units_per_gpu` per GPU when `device` is a GPU) or "ray" (tasks on the Ray cluster at `address`,
    a local Ray instance when None, each with `gpus_per_unit` of a GPU)."""
    if kind == "local":
        return LocalExecutor(workers, device, units_per_gpu)
    if kind == "ray":
        from zoobench.execution.ray_executor import RayExecutor

        return RayExecutor(address, gpus_per_unit)
    raise UsageError(f"unknown executor '{kind}'; valid: {', '.join(EXECUTORS)}")


@dataclass(frozen=True)
class Execution:
    """Where and how a stage's units run."""

    workers: int | None = None  # worker processes (default: one per core, or units_per_gpu per GPU)
    runtime: Runtime = field(default_factory=Runtime)  # device, precision, memory format, compilation
    executor: str | Executor = "local"  # "local", "ray", or an executor object
    address: str | None = None  # with "ray": the cluster (None: a local Ray instance)
    gpus_per_unit: float = 0.0  # with "ray": the GPU fraction each unit asks for
    units_per_gpu: int = UNITS_PER_GPU  # with "local" on GPUs: units sharing one GPU at a time
    data_root: str | Path | None = None  # where datasets are read (None: datasets that need no files)
    progress: bool = True  # show a live progress bar

    @property
    def root(self) -> str | None:
        """The data root as units carry it (a plain string, the same on every worker)."""
        return str(self.data_root) if self.data_root else None

    def with_executor(self, executor: Executor) -> Execution:
        """The same settings running on an executor already started (so stages share one)."""
        return replace(self, executor=executor)

    def start(self) -> Executor:
        """The executor these settings ask for (the object itself when one was given)."""
        if not isinstance(self.executor, str):
            return self.executor
        return make_executor(self.executor, self.workers, self.runtime.device, self.units_per_gpu, self.address,
                             self.gpus_per_unit)

    def unit_runtime(self, executor: Executor) -> Runtime:
        """The runtime handed to units. For this machine's workers it is decided (and checked) here; for
        an executor whose workers are other machines (``executor.remote``, a Ray cluster), whose GPUs this
        one may lack, only "auto" is decided here and the rest on each worker (units resolve it again)."""
        if getattr(executor, "remote", False) and self.runtime.device != "auto":
            return self.runtime
        return self.runtime.resolved()
