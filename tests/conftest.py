"""Shared fixtures: tiny digits zoos written as real spec files, and an empty store per test."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from zoobench.execution import Execution

QUIET = Execution(workers=1, progress=False)  # inline, no progress bar: what most tests run with

TINY_SPEC = """
[zoo]
name = "{name}"
description = "tiny test zoo"

[data]
transfer_target = "digits_shifted"
dataset = "digits"

[model]
architecture = "mlp"
depth = 1

[training]
optimizer = "sgd"
lr = {lr}
momentum = 0.9
weight_decay = 5e-4
epochs = {epochs}
init = "kaiming_uniform"
checkpoint_epochs = {checkpoints}

[grid]
seeds = {seeds}

[grid.load]
field = "model.width"
values = {widths}

[grid.temperature]
field = "training.batch_size"
values = {batch_sizes}
"""


def write_spec(folder: Path, name: str = "tiny", lr: float = 0.1, epochs: int = 2, seeds=(0, 1),
               widths=(4, 8), batch_sizes=(64, 128), checkpoints=(0, 1)) -> Path:
    path = folder / f"{name}.toml"
    path.write_text(TINY_SPEC.format(name=name, lr=lr, epochs=epochs, seeds=list(seeds), widths=list(widths),
                                     batch_sizes=list(batch_sizes), checkpoints=list(checkpoints)))
    return path


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """Every tensor in the suite is tiny: on a busy 2-core machine, waking a thread pool per op costs
    seconds (OpenMP threads spin against the other load), and one thread is fastest anyway."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tiny_spec_path(tmp_path: Path) -> Path:
    return write_spec(tmp_path)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


def zoobench_cli(*args: str, home: Path | None = None, timeout: float = 300,
                 env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run the real command line in a subprocess, as a user would (`env` adds variables)."""
    env = {**os.environ, **(env or {})}
    if home is not None:
        env["ZOOBENCH_HOME"] = str(home)
    return subprocess.run([sys.executable, "-m", "zoobench", *args], capture_output=True, text=True,
                          env=env, timeout=timeout)


@pytest.fixture(scope="session")
def tiny_zoo(tmp_path_factory):
    """A trained and fully annotated 2 x 2 x 3-seed digits zoo, shared by the method tests (read-only).

    Widths 4 and 16 at batch 64 and 128, 3 epochs, checkpoints at every epoch 0-3: the narrow cells
    underfit, the wide ones fit; every metric the phases and the methods need is stored."""
    import torch

    from zoobench.landscape.annotate import annotate
    from zoobench.train.generate import generate
    from zoobench.spec import load_spec
    from zoobench.store import Store

    folder = tmp_path_factory.mktemp("tiny_zoo")
    spec = load_spec(str(write_spec(folder, "tiny_zoo", epochs=3, seeds=(0, 1, 2), widths=(4, 16),
                                    checkpoints=(0, 1, 2))))
    store = Store(folder / "home")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    generate(spec, store, execution=QUIET)
    annotate(spec, store, execution=QUIET)
    torch.set_num_threads(threads)
    return store.zoo(spec)


@pytest.fixture
def zoo_copy(tiny_zoo, tmp_path):
    """(spec, store): the session's tiny zoo copied into a fresh store, so a test can write results into it."""
    import shutil

    from zoobench.store import Store

    store = Store(tmp_path / "home")
    shutil.copytree(tiny_zoo.path, store.zoo(tiny_zoo.spec).path)
    return tiny_zoo.spec, store


# A method plugin whose headline is the cell's width, for tests of what surrounds methods.
WIDTH_PLUGIN = '''
from zoobench.method import Method


class Width(Method):
    name = "width"
    version = "1"
    headline = "width"

    def run(self, cell, ctx):
        return {"width": float(cell.load)}
'''
