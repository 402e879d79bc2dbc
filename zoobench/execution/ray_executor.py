"""The Ray executor: the same units as the local executor, as Ray tasks on a cluster (``zoobench[ray]``).

A Ray task runs the very function a local worker runs, but under `atomic.capture`: what the unit
would write into the store (a model folder, a cell's annotation or result file) goes to a scratch
folder on its node and comes back to the driver as bytes, and the driver installs it atomically
(`zoobench.store.install`) before it counts the unit as done. So only the driver writes the store: a node
that crashes, or a task that Ctrl-C cancels, can never leave anything in it, and resuming works
exactly as locally (what is finished is skipped by the driver's planning). The price is that a
unit's outputs (for training, its models' checkpoints) travel through Ray's object store to the
driver. Units still read their inputs in place (checkpoints and annotations from the store, the
data from the data root), so every node must see the store and the data at the same paths (a
shared file system; only the driver writes to the store); `zoobench ... --executor ray --address
auto` then spreads the units over all nodes.

A unit asks Ray for one CPU and, on GPU clusters, a fraction of a GPU (``gpus_per_unit``), so
several small units share a GPU. Units are submitted at most ``2 x`` the cluster's CPUs at a time
so the progress bar shows what is in flight, and Ctrl-C cancels what is running.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Sequence

from zoobench.errors import ZoobenchError
from zoobench.execution.progress import progress_bar
from zoobench.execution.units import Unit, guarded
from zoobench.store import atomic, install


def _run_unit(unit: Unit) -> tuple[Any, dict[Path, bytes]]:
    """The task: the unit's result and the files it wrote (real path -> content), none of them in the store."""
    import torch

    torch.set_num_threads(1)  # one CPU per unit, as Ray scheduled it
    with atomic.capture() as files:
        result = guarded(unit)  # out of GPU memory: one line, not a CUDA traceback
    return result, files


def _install(returned: tuple[Any, dict[Path, bytes]]) -> Any:
    """On the driver: put a finished task's files into the store; returns the unit's result."""
    result, files = returned
    install(files)
    return result


class RayExecutor:
    """Runs units as Ray tasks on the cluster at `address` (None: a local Ray instance)."""

    remote = True  # its workers may be other machines: units decide their device there

    def __init__(self, address: str | None = None, gpus_per_unit: float = 0.0, num_cpus: int | None = None) -> None:
        try:
            import ray
        except ImportError:
            raise ZoobenchError("the Ray executor needs Ray: pip install 'zoobench[ray]'") from None
        self.ray = ray
        if not ray.is_initialized():
            ray.init(address=address, num_cpus=num_cpus, include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
        self.gpus_per_unit = gpus_per_unit

    def run(self, units: Sequence[Unit], title: str, unit_name: str = "models",
            show_progress: bool = True) -> Iterator[tuple[Unit, Any]]:
        """Yield ``(unit, result)`` as tasks finish; a task's exception propagates, as with the local executor."""
        ray = self.ray
        task = ray.remote(num_cpus=1, num_gpus=self.gpus_per_unit, max_retries=0)(_run_unit)
        limit = max(1, 2 * int(ray.cluster_resources().get("CPU", 1)))
        pending = list(reversed(units))
        running: dict[Any, Unit] = {}
        with progress_bar(title, unit_name, sum(u.size for u in units), show_progress) as (progress, bar, show):
            try:
                while pending or running:
                    while pending and len(running) < limit:
                        unit = pending.pop()
                        running[task.remote(unit)] = unit
                    show(list(running.values()))
                    (done,), _ = ray.wait(list(running), num_returns=1)
                    unit = running.pop(done)
                    try:
                        returned = ray.get(done)
                    except ray.exceptions.RayTaskError as error:
                        raise error.as_instanceof_cause() from None
                    yield unit, _install(returned)  # installed before the unit counts as done: a resume sees it
                    progress.advance(bar, unit.size)
                show([])
            finally:  # on Ctrl-C or an error, stop what is still running
                for ref in running:
                    ray.cancel(ref, force=True)
