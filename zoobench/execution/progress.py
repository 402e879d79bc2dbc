"""The live progress bar every executor shows: units done of the total, elapsed time, ETA, and what runs."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Sequence

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


@contextmanager
def progress_bar(title: str, unit_name: str, total: int, show_progress: bool):
    """A live bar: units done of `total`, elapsed time, ETA, and the labels of the units in flight.

    Yields (progress, task, show) where ``show(running_units)`` updates the labels in flight.
    """
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn(unit_name),
               TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn()]
    with Progress(*columns, disable=not show_progress, transient=False) as progress:
        task = progress.add_task(title, total=total)

        def show(running: Sequence) -> None:
            progress.update(task, description=f"{title} [cyan]{', '.join(u.label for u in running)}")

        yield progress, task, show


