"""The local executor: runs independent units of work in worker processes, with a live progress bar.

Units are handed out one per free worker, so the bar can show what is in flight and an interrupt
loses only those units. Workers are started fresh (spawn), pinned to a share of the cores, and die
with their parent even on ``kill -9`` (Linux PDEATHSIG), so no orphan keeps writing to a store that
a re-run is already repairing.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import queue
import signal
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn



@dataclass(frozen=True)
class Unit:
    label: str  # shown while the unit runs, e.g. the cell id
    size: int  # how much of the progress total it completes (e.g. its number of models)
    args: tuple


def _init_worker(threads: int) -> None:
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: workers may outlive a killed parent
        pass
    import torch

    torch.set_num_threads(threads)


@contextmanager
def progress_bar(title: str, unit_name: str, total: int, show_progress: bool):
    """A live bar: units done of `total`, elapsed time, ETA, and the labels of the units in flight.

    Yields (progress, task, show) where ``show(running_units)`` updates the labels in flight.
    """
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn(unit_name),
               TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn()]
    with Progress(*columns, disable=not show_progress, transient=False) as progress:
        task = progress.add_task(title, total=total)

        def show(running: Sequence[Unit]) -> None:
            progress.update(task, description=f"{title} [cyan]{', '.join(u.label for u in running)}")

        yield progress, task, show


class LocalExecutor:
    """Runs units on this machine: inline with one worker, else in a pool of spawned processes."""

    def __init__(self, workers: int | None = None) -> None:
        self.workers = max(1, workers or os.cpu_count() or 1)

    def run(self, fn: Callable[..., Any], units: Sequence[Unit], title: str, unit_name: str = "models",
            show_progress: bool = True) -> Iterator[tuple[Unit, Any]]:
        """Yield ``(unit, result)`` as units finish; a unit's exception propagates (units report their own failures)."""
        with progress_bar(title, unit_name, sum(u.size for u in units), show_progress) as (progress, task, show):
            if self.workers == 1 or len(units) <= 1:
                for unit in units:
                    show([unit])
                    yield unit, fn(*unit.args)
                    progress.advance(task, unit.size)
                show([])
                return
            yield from self._pool(fn, units, progress, task, show)

    def _pool(self, fn, units, progress, task, show) -> Iterator[tuple[Unit, Any]]:
        workers = min(self.workers, len(units))
        threads = max(1, (os.cpu_count() or 1) // workers)
        finished: queue.Queue = queue.Queue()
        pending = list(reversed(units))
        running: dict[int, Unit] = {}
        pool = multiprocessing.get_context("spawn").Pool(workers, initializer=_init_worker, initargs=(threads,))
        try:
            while pending or running:
                while pending and len(running) < workers:
                    unit = pending.pop()
                    running[id(unit)] = unit
                    pool.apply_async(fn, unit.args,
                                     callback=lambda result, key=id(unit): finished.put((key, result, None)),
                                     error_callback=lambda error, key=id(unit): finished.put((key, None, error)))
                show(list(running.values()))
                key, result, error = finished.get()
                unit = running.pop(key)
                if error is not None:
                    raise error
                yield unit, result
                progress.advance(task, unit.size)
            show([])
            pool.close()
        finally:  # on Ctrl-C or an error, stop the units in flight now rather than after they finish
            pool.terminate()
            pool.join()
