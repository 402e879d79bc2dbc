"""The command groups, the options several commands share, and turning flags into API arguments."""

from __future__ import annotations

import functools
import inspect
from pathlib import Path
from typing import Callable, Optional

import typer
from rich.console import Console

from zoobench.errors import UsageError
from zoobench.execution import UNITS_PER_GPU, Execution, Runtime

# Plain help (rich_markup_mode None): click wraps it to the terminal and never cuts an option's name.
app = typer.Typer(help="Benchmark harness for downstream methods on phase zoos.", no_args_is_help=True,
                  pretty_exceptions_show_locals=False, add_completion=False, rich_markup_mode=None)


def group(name: str, help: str) -> typer.Typer:
    """A command group under `zoobench NAME`."""
    commands = typer.Typer(help=help, no_args_is_help=True, rich_markup_mode=None)
    app.add_typer(commands, name=name)
    return commands


zoo_app = group("zoo", "List, inspect, generate and verify zoos.")
methods_app = group("methods", "Method plugins: built-in, installed and local.")
data_app = group("data", "Datasets: where they are expected and how to get them.")
leaderboard_app = group("leaderboard", "Result tables per phase and cell, method comparisons, published leaderboards.")

console = Console()
errors = Console(stderr=True)

HomeOption = typer.Option(None, "--home", envvar="ZOOBENCH_HOME", help="Store folder (default: ~/.cache/zoobench).")
ZooOption = typer.Option(..., "--zoo", "-z", help="Zoo name or spec file.")
EpochOption = typer.Option(None, "--epoch", help="Stored epoch to use (default: the spec's metric epoch).")
WorkersOption = typer.Option(None, "--workers", min=1, help="Worker processes (default: one per core).")
DataRootOption = typer.Option(None, "--data-root", envvar="ZOOBENCH_DATA", help="Dataset folder.")
ExecutorOption = typer.Option("local", "--executor", help="Where units run: local (worker processes) or ray "
                              "(a Ray cluster; pip install 'zoobench[ray]').")
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


# Options many commands share, declared once: (type, option) by parameter name.
SHARED = {"home": (Optional[Path], HomeOption), "epoch": (Optional[int], EpochOption),
          "plugins": (Optional[list[str]], PluginOption)}
# The flags of where and how units run, by the name of the `Execution` (or `Runtime`) field they set.
EXECUTION_FLAGS = {
    "workers": (Optional[int], WorkersOption), "data_root": (Optional[Path], DataRootOption),
    "device": (str, DeviceOption), "executor": (str, ExecutorOption), "address": (Optional[str], AddressOption),
    "gpus_per_unit": (float, GpusOption), "units_per_gpu": (int, UnitsPerGpuOption)}
TRAINING_FLAGS = {"precision": (str, PrecisionOption), "channels_last": (Optional[bool], ChannelsLastOption),
                  "compile": (bool, CompileOption)}


def shared_options(training: bool = False) -> Callable:
    """Give a command its shared options: a keyword-only parameter named in `SHARED` gets its usual
    declaration, and an `execution` parameter becomes the execution flags (with `training`, the
    training runtime's too) and receives the `Execution` they describe."""
    flags = {**EXECUTION_FLAGS, **(TRAINING_FLAGS if training else {})}

    def decorate(command: Callable) -> Callable:
        signature = inspect.signature(command)

        @functools.wraps(command)
        def wrapper(*args, **kwargs):
            if "execution" in signature.parameters:
                given = {name: kwargs.pop(name) for name in flags}
                runtime = Runtime(given.pop("device"), given.pop("precision", "auto"),
                                  given.pop("channels_last", None), given.pop("compile", False))
                kwargs["execution"] = Execution(runtime=runtime, **given)
            return command(*args, **kwargs)

        parameters = []
        for parameter in signature.parameters.values():
            if parameter.name == "execution":
                parameters += [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=kind)
                               for name, (kind, option) in flags.items()]
            elif parameter.kind is inspect.Parameter.KEYWORD_ONLY and parameter.name in SHARED:
                kind, option = SHARED[parameter.name]
                parameters.append(parameter.replace(default=option, annotation=kind))
            else:
                parameters.append(parameter)
        wrapper.__signature__ = signature.replace(parameters=parameters)
        return wrapper

    return decorate


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


def resolve(zoo: str, home: Optional[Path]):
    """(the store at `home`, the spec of the zoo named `zoo` or of the spec file at that path)."""
    the_store = store(home)
    return the_store, the_store.resolve(zoo)
