"""A single-file method plugin (loaded with --plugin): the no-op test double of the runner tests.

It counts the cell's models and, when told to, fails on one cell, so tests can check that results
are stored per cell, that re-runs skip finished cells and that one failing cell spares the others.
"""

import time
from dataclasses import dataclass

from zoobench.method import Method


class Noop(Method):
    name = "noop"
    version = "1"
    headline = "models"

    @dataclass(frozen=True)
    class Config:
        fail_on: str = ""  # a cell id on which to raise
        offset: float = 0.0
        no_headline: bool = False  # report only other numbers, as methods do on tasks their headline misses
        sleep: float = 0.0  # seconds per cell, to interrupt a run midway

    def run(self, cell, ctx):
        time.sleep(ctx.config.sleep)
        if cell.id == ctx.config.fail_on:
            raise RuntimeError(f"told to fail on {cell.id}")
        if ctx.config.no_headline:
            return {"diverged": len(cell.diverged)}
        return {"models": len(cell.model_ids) + ctx.config.offset, "diverged": len(cell.diverged)}
