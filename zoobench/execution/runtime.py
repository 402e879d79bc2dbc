"""How training uses the hardware it runs on: device, precision, memory format and compilation.

None of it is part of a zoo's identity (the spec's fingerprint): every runtime trains the same
recipe, so a zoo can be grown on a laptop and finished on a GPU node. What changes is float
rounding: fp32 runtimes differ from each other at the level of rounding (what fused training also
changes), bf16 autocast more, which is why evaluation always runs in fp32 and why each model's
``done.json`` records the runtime that trained it. On CUDA the defaults are bf16 autocast and
channels_last (the tensor cores' formats); on CPU, fp32 and the default memory format.
``torch.compile`` stays off unless asked for: its warm-up (tens of seconds per cell shape) only pays
for long schedules, and no GPU was available to measure where that starts.
"""

from __future__ import annotations

import re
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from typing import Any, ContextManager

PRECISIONS = ("fp32", "bf16")


@dataclass(frozen=True)
class Runtime:
    """Each field may be left to "auto" (None for channels_last) until `resolved` decides it for this
    machine, so that a run with nothing to do never imports torch."""

    device: str = "auto"  # "auto": the GPU when there is one, else the CPU
    precision: str = "auto"  # of the training forward pass (autocast): fp32 or bf16; evaluation is always fp32
    channels_last: bool | None = None
    compile: bool = False

    def __post_init__(self) -> None:
        from zoobench.errors import UsageError

        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", self.device):
            raise UsageError(f"unknown device '{self.device}'; valid: auto, cpu, cuda, cuda:N, mps")
        if self.precision not in ("auto", *PRECISIONS):
            raise UsageError(f"unknown precision '{self.precision}'; valid: auto, {', '.join(PRECISIONS)}")

    def resolved(self) -> Runtime:
        """This runtime with every automatic choice made: on a GPU, bf16 (where supported) and
        channels_last; on the CPU, fp32 and the default memory format."""
        import torch

        device = self.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        cuda = torch.device(device).type == "cuda"
        if cuda and not torch.cuda.is_available():
            from zoobench.errors import UsageError

            raise UsageError(f"device '{device}' asked for, but torch sees no CUDA GPU here; use --device cpu "
                             "(or auto, which picks the GPU only when there is one)")
        precision = self.precision
        if precision == "auto":
            precision = "bf16" if cuda and torch.cuda.is_bf16_supported() else "fp32"
        return Runtime(device, precision, cuda if self.channels_last is None else self.channels_last, self.compile)

    def autocast(self) -> ContextManager:
        """The context a training forward pass and loss run in."""
        if self.precision == "fp32":
            return nullcontext()
        import torch

        return torch.autocast(torch.device(self.device).type, dtype=torch.bfloat16)

    def prepare(self, model: Any) -> Any:
        """Put `model` in this runtime's memory format; returns what a training step should call (the
        model itself, or its compiled form, which shares its parameters)."""
        import torch

        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        return torch.compile(model) if self.compile else model

    def record(self) -> dict[str, Any]:
        return asdict(self)
