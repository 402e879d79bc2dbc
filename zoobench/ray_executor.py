"""The Ray executor: the same units as the local executor, as Ray tasks on a cluster (``zoobench[ray]``).

Every unit of zoobench writes its own output atomically into the store (a model folder renamed into
place, a cell's annotation or result file), so a Ray task runs the very function a local worker
runs, and resuming works the same: what is finished is skipped by the driver's planning. On a
cluster every node must see the store and the data at the same paths (a shared file system);
`zoobench ... --executor ray --address auto` then spreads the units over all nodes.

A unit asks Ray for one CPU and, on GPU clusters, a fraction of a GPU (``gpus_per_unit``), so
several small units share a GPU. Units are submitted at most ``2 x`` the cluster's CPUs at a time
so the progress bar shows what is in flight, and Ctrl-C cancels what is running.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, Sequence

from zoobench.errors import ZoobenchError
from zoobench.executor import Unit, progress_bar


def _run_unit(fn: Callable[..., Any], args: tuple) -> Any:
    import torch

    torch.set_num_threads(1)  # one CPU per unit, as Ray scheduled it
    return fn(*args)


class RayExecutor:
    """Runs units as Ray tasks on the cluster at `address` (None: a local Ray instance)."""

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

    def run(self, fn: Callable[..., Any], units: Sequence[Unit], title: str, unit_name: str = "models",
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
                        running[task.remote(fn, unit.args)] = unit
                    show(list(running.values()))
                    (done,), _ = ray.wait(list(running), num_returns=1)
                    unit = running.pop(done)
                    try:
                        result = ray.get(done)
                    except ray.exceptions.RayTaskError as error:
                        raise error.as_instanceof_cause() from None
                    yield unit, result
                    progress.advance(bar, unit.size)
                show([])
            finally:  # on Ctrl-C or an error, stop what is still running
                for ref in running:
                    ray.cancel(ref, force=True)
