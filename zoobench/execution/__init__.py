"""Running units of work: the executors (local worker processes, a Ray cluster), the runtime a unit
trains with, and the settings object every stage takes."""

from zoobench.execution.runtime import Runtime
from zoobench.execution.settings import EXECUTORS, UNITS_PER_GPU, Execution, Executor, make_executor
from zoobench.execution.units import OutOfDeviceMemory, Unit, guarded

__all__ = ["EXECUTORS", "UNITS_PER_GPU", "Execution", "Executor", "OutOfDeviceMemory", "Runtime", "Unit", "guarded",
           "make_executor"]
