"""Progress bars that show on a terminal and stay silent in logs, pipes and CI."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


def on_terminal() -> bool:
    return sys.stderr.isatty()


class _Bar:
    def __init__(self, progress: Progress | None, task: int | None) -> None:
        self._p, self._t = progress, task

    def advance(self, n: int = 1, status: str | None = None) -> None:
        if self._p is not None and self._t is not None:
            self._p.update(self._t, advance=n, **({"status": status} if status is not None else {}))


@contextmanager
def progress_bar(total: int, description: str, enabled: bool | None = None) -> Iterator[_Bar]:
    """A rich progress bar (``enabled`` defaults to: stderr is a terminal)."""
    if enabled is None:
        enabled = on_terminal()
    if not enabled:
        yield _Bar(None, None)
        return
    cols = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TimeRemainingColumn(), TextColumn("{task.fields[status]}"))
    with Progress(*cols, console=Console(stderr=True), transient=True) as p:
        yield _Bar(p, p.add_task(description, total=total, status=""))
