"""The local executor: runs independent units of work in worker processes, with a live progress bar.

Units are handed out one per free worker, so the bar can show what is in flight and an interrupt
loses only those units. Workers are started fresh (spawn), pinned to a share of the cores, and die
with their parent even on ``kill -9`` (Linux PDEATHSIG), so no orphan keeps writing to a store that
a re-run is already repairing. An executor keeps its workers from one `run` to the next: a worker
costs seconds to start (importing torch and the dataset) and the stages of `zoobench run` (train,
each metric, the method) share one executor, so they share their workers too. An error or an
interrupt ends the workers; the next `run` starts new ones.

For units on a GPU there are `units_per_gpu` workers per visible GPU, each
seeing only its GPU (``CUDA_VISIBLE_DEVICES``), so units say just "cuda". Several units share a GPU
because a zoo's small cells cannot fill one alone (a batch-8 step of a width-2 ResNet is a few
kernels of microseconds behind milliseconds of Python): while one process is in Python, another's
kernels run. `UNITS_PER_GPU` is a reasoned default, not a measured one: no GPU was available.
Whether units fit beside each other is found out, not estimated: a unit that runs out of GPU memory
while others share its GPU is retried once that GPU is idle, with the GPU to itself (the GPU takes no
new units until then, so the retry cannot starve).
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import queue
import signal
import weakref
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

from zoobench.execution.progress import progress_bar
from zoobench.execution.units import OutOfDeviceMemory, Unit, guarded

UNITS_PER_GPU = 4


def _init_worker(threads: int, gpus: list[str], started) -> None:
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: workers may outlive a killed parent
        pass
    if gpus:  # round robin over the GPUs, also for a worker that replaces one that died
        with started.get_lock():
            index, started.value = started.value, started.value + 1
        os.environ["CUDA_VISIBLE_DEVICES"] = gpus[index % len(gpus)]
    import torch

    torch.set_num_threads(threads)


class LocalExecutor:
    """Runs units on this machine: inline with one worker, else in a pool of spawned processes."""

    def __init__(self, workers: int | None = None, device: str = "cpu", units_per_gpu: int = UNITS_PER_GPU) -> None:
        """Units that run on `device` "cuda" (or "auto" on a GPU machine) get `units_per_gpu` workers
        per visible GPU, units on "cuda:N" `units_per_gpu` workers (`workers`, if given, caps either);
        otherwise `workers` processes (default: one per core). GPUs are counted when units first run,
        so that planning never imports torch."""
        self.requested, self.device, self.units_per_gpu = workers, device, units_per_gpu
        self._pools: dict[tuple[int, tuple[str, ...]], list[Any]] = {}  # (workers, GPUs) -> a pool per lane
        weakref.finalize(self, _terminate, self._pools)

    def close(self) -> None:
        """End the worker processes now (they also end when the executor is collected or the program exits)."""
        _terminate(self._pools)

    def layout(self) -> tuple[int, list[str]]:
        """(worker processes, the CUDA device id each worker i sees as ``gpus[i % len(gpus)]``)."""
        per_core = max(1, self.requested or os.cpu_count() or 1)
        if self.device not in ("auto", "cuda") and not self.device.startswith("cuda:"):
            return per_core, []
        import torch

        if not torch.cuda.is_available():
            return per_core, []
        if self.device.startswith("cuda:"):  # one GPU named by the user: its workers all see every GPU
            return min(self.requested or self.units_per_gpu, self.units_per_gpu), []
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        gpus = visible.split(",") if visible else [str(i) for i in range(torch.cuda.device_count())]
        most = len(gpus) * self.units_per_gpu
        return min(self.requested or most, most), gpus

    def run(self, units: Sequence[Unit], title: str, unit_name: str = "models",
            show_progress: bool = True) -> Iterator[tuple[Unit, Any]]:
        """Yield ``(unit, unit())`` as units finish; a unit's exception propagates (units report their own failures)."""
        workers, gpus = self.layout() if units else (1, [])
        with progress_bar(title, unit_name, sum(u.size for u in units), show_progress) as (progress, task, show):
            if (workers == 1 or len(units) <= 1) and len(gpus) <= 1:
                for unit in units:
                    show([unit])
                    yield unit, guarded(unit)
                    progress.advance(task, unit.size)
                show([])
                return
            yield from self._pool(units, workers, gpus, progress, task, show)

    def _pool(self, units, workers: int, gpus: list[str], progress, task, show) -> Iterator[tuple[Unit, Any]]:
        lanes = [_Lane(pool, min(workers, self.units_per_gpu) if gpu else workers)
                 for pool, gpu in zip(self._started(workers, gpus), gpus or [None])]
        finished: queue.Queue = queue.Queue()
        pending = list(reversed(units))
        alone: list[Unit] = []  # ran out of GPU memory next to other units: waits for a GPU to itself
        running: dict[int, tuple[Unit, _Lane]] = {}

        def start(unit: Unit, lane: _Lane) -> None:
            lane.shared |= set(lane.running)
            if lane.running:
                lane.shared.add(id(unit))
            lane.running.add(id(unit))
            running[id(unit)] = unit, lane
            lane.pool.apply_async(guarded, (unit,),
                                  callback=lambda result, key=id(unit): finished.put((key, result, None)),
                                  error_callback=lambda error, key=id(unit): finished.put((key, None, error)))

        try:
            while pending or alone or running:
                draining = None
                if alone:  # the least busy GPU takes no new units until it is idle, then runs this one alone
                    draining = min(lanes, key=lambda lane: len(lane.running))
                    if not draining.running:
                        draining.exclusive = True
                        start(alone.pop(0), draining)
                for lane in lanes:
                    while (pending and lane is not draining and not lane.exclusive and len(lane.running) < lane.slots
                           and len(running) < workers):
                        start(pending.pop(), lane)
                show([unit for unit, _ in running.values()])
                key, result, error = finished.get()
                unit, lane = running.pop(key)
                lane.running.discard(key)
                lane.exclusive = False
                shared = key in lane.shared
                lane.shared.discard(key)
                if isinstance(error, OutOfDeviceMemory) and shared:
                    alone.append(unit)
                    continue
                if error is not None:
                    raise error
                yield unit, result
                progress.advance(task, unit.size)
            show([])
        except BaseException:  # Ctrl-C, an error, or the caller stopped early: stop the units in flight now
            self.close()
            raise

    def _started(self, workers: int, gpus: list[str]) -> list[Any]:
        """The pools of `workers` workers (one pool per GPU, so that a unit can be sent to a chosen GPU; on
        the CPU one pool), started on first use and kept for the next `run`."""
        key = (workers, tuple(gpus))
        if key not in self._pools:
            self.close()  # other workers than these are no longer wanted
            threads = max(1, (os.cpu_count() or 1) // workers)
            context = multiprocessing.get_context("spawn")
            self._pools[key] = [context.Pool(min(workers, self.units_per_gpu) if gpu else workers,
                                             initializer=_init_worker,
                                             initargs=(threads, [gpu] if gpu else [], context.Value("i", 0)))
                                for gpu in (gpus or [None])]
        return self._pools[key]


def _terminate(pools: dict[Any, list[Any]]) -> None:
    for lane_pools in pools.values():
        for pool in lane_pools:
            pool.terminate()
            pool.join()
    pools.clear()


@dataclass
class _Lane:
    """Worker processes on one GPU (or the CPU) and the units they run."""

    pool: Any
    slots: int
    running: set[int] = field(default_factory=set)
    shared: set[int] = field(default_factory=set)  # running units that had company on this GPU at some point
    exclusive: bool = False  # runs a unit that needs the GPU to itself


