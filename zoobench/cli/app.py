"""The command groups, the options several commands share, and turning flags into API arguments."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from zoobench.errors import UsageError
from zoobench.execution import UNITS_PER_GPU, Execution, Runtime

app = typer.Typer(help="Benchmark harness for downstream methods on phase zoos.", no_args_is_help=True,
                  pretty_exceptions_show_locals=False, add_completion=False)
zoo_app = typer.Typer(help="List, inspect, generate and verify zoos.", no_args_is_help=True)
app.add_typer(zoo_app, name="zoo")
methods_app = typer.Typer(help="Method plugins: built-in, installed and local.", no_args_is_help=True)
app.add_typer(methods_app, name="methods")
data_app = typer.Typer(help="Datasets: where they are expected and how to get them.", no_args_is_help=True)
app.add_typer(data_app, name="data")
leaderboard_app = typer.Typer(help="Result tables per phase and cell, method comparisons, published leaderboards.",
                              no_args_is_help=True)
app.add_typer(leaderboard_app, name="leaderboard")

console = Console()
errors = Console(stderr=True)

HomeOption = typer.Option(None, "--home", envvar="ZOOBENCH_HOME", help="Store folder (default: ~/.cache/zoobench).")
ZooOption = typer.Option(..., "--zoo", "-z", help="Zoo name or spec file.")
EpochOption = typer.Option(None, "--epoch", help="Stored epoch to use (default: the spec's metric epoch).")
WorkersOption = typer.Option(None, "--workers", min=1, help="Worker processes (default: one per core).")
DataRootOption = typer.Option(None, "--data-root", envvar="ZOOBENCH_DATA", help="Dataset folder.")
ExecutorOption = typer.Option("local", "--executor", help="Where units run: local (worker processes) or ray "
                              "(a Ray cluster; pip install 'zoobench\\[ray]').")
AddressOption = typer.Option(None, "--address", help="Ray cluster address, e.g. auto (default: a local Ray).")
GpusOption = typer.Option(0.0, "--gpus-per-unit", min=0.0, help="With --executor ray: GPU fraction per unit.")
DeviceOption = typer.Option("auto", "--device", help="Torch device: auto (the GPUs when there are, else the CPU), "
                            "cpu, cuda (every visible GPU) or cuda:N.")
UnitsPerGpuOption = typer.Option(UNITS_PER_GPU, "--units-per-gpu", min=1,
                                 help="Units sharing one GPU at a time (local executor).")
PrecisionOption = typer.Option("auto", "--precision", help="Training forward pass: auto (bf16 on GPUs that support "
                               "it, else fp32), fp32 or bf16. Evaluation is always fp32.")
ChannelsLastOption = typer.Option(None, "--channels-last/--no-channels-last", show_default=False,
                                  help="Channels-last memory format for training (default: on GPUs).")
CompileOption = typer.Option(False, "--compile/--no-compile", help="torch.compile the training step.")
PluginOption = typer.Option(None, "--plugin", help="Method plugin module or .py file (repeatable); "
                            "ZOOBENCH_PLUGINS adds more, separated by ':'.")


def execution(workers: Optional[int] = None, data_root: Optional[Path] = None, device: str = "auto",
              executor: str = "local", address: Optional[str] = None, gpus: float = 0.0,
              units_per_gpu: int = UNITS_PER_GPU, precision: str = "auto", channels_last: Optional[bool] = None,
              compile: bool = False) -> Execution:
    """The execution settings the shared flags ask for."""
    return Execution(workers, Runtime(device, precision, channels_last, compile), executor, address, gpus,
                     units_per_gpu, data_root)


def values(text: Optional[str]) -> Optional[list[str]]:
    """A comma-separated option as a list (None when not given)."""
    return None if text is None else [v for v in text.replace(" ", "").split(",") if v]


def settings(pairs: Optional[list[str]]) -> dict[str, str]:
    """Repeated ``--set key=value`` options as a dict (the method checks the values)."""
    found = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--set expects key=value, got '{pair}'")
        found[key.strip()] = value.strip()
    return found


def store(home: Optional[Path]):
    from zoobench.store import Store

    return Store(home)
