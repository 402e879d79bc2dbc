"""Units of work: what every stage hands an executor, and how a worker runs one.

A unit is a small picklable object (a frozen dataclass of the stage that makes it: a cell to train,
a cell to annotate, a cell to run a method on) that says what to show while it runs and how much of
the progress total it completes, and does its work when called. Executors know nothing else about
it, so a new stage needs no change to them.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from zoobench.errors import ZoobenchError


@runtime_checkable
class Unit(Protocol):
    label: str  # shown while the unit runs, e.g. the cell id
    size: int  # how much of the progress total it completes (e.g. its number of models)

    def __call__(self) -> Any:
        """Do the work (in a worker process or a Ray task) and return a small, picklable result."""


class OutOfDeviceMemory(ZoobenchError):
    """A unit ran out of GPU memory. Next to other units on its GPU, the executor retries it with the
    GPU to itself; alone, it is an error (a smaller batch or width, or a larger GPU, is needed)."""


def guarded(unit: Unit) -> Any:
    """A unit as a worker runs it: torch's out-of-memory error (whose CUDA state cannot travel between
    processes) becomes `OutOfDeviceMemory`, after the worker has released its cached GPU memory."""
    import torch

    try:
        return unit()
    except torch.OutOfMemoryError as error:
        torch.cuda.empty_cache()
        raise OutOfDeviceMemory(f"out of GPU memory: {str(error).splitlines()[0]}") from None
