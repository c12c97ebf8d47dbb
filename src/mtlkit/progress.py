"""Progress for long work, whatever the output; all of it on stderr.

- On a terminal: rich progress bars (transient). A bar opened while another is showing (a training run's
  epochs inside a bench's methods × splits) joins the same display as a second line.
- Not on a terminal (piped, logged, CI): plain lines. A bar made for counted work (bench, reproduce, sweep)
  prints one line per step (``bench digits: hard-share seed-1 done in 4.2 s (error 2.1)``); a training run's
  epoch bar prints only once the run has gone on for `PLAIN_AFTER_S` seconds, then at most one line per
  `PLAIN_AFTER_S` seconds, so short runs stay quiet.
- ``--quiet`` (`QuietFlag`, on bench / train / sweep / reproduce) or `set_quiet` silences all of it.

``enabled`` of `progress_bar` (the ``progress=`` argument of `mtlkit.train`, `run_bench`, ...): ``None``
(default) chooses as above, ``True`` forces a rich bar, ``False`` shows nothing.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

PLAIN_AFTER_S = 30.0  # a timed plain bar's first line after this many seconds, then one per this interval
_clock = time.monotonic  # the clock of timed plain bars (tests replace it)
_quiet = False
_scopes: list[str] = []  # labels of the work in progress, outermost first (see `scope`)
_live: list[Any] = []  # the rich Progress being shown, if any: nested bars join it


def set_quiet(quiet: bool = True) -> None:
    """Silence (or re-enable) every progress bar and line of this process."""
    global _quiet
    _quiet = bool(quiet)


def is_quiet() -> bool:
    """Whether progress output is silenced."""
    return _quiet


def on_terminal() -> bool:
    """Whether stderr is a terminal (rich bars) rather than a pipe or a file (plain lines)."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stream
        return False


def line(message: str) -> None:
    """One plain progress line on stderr (unless quiet)."""
    if not _quiet:
        print(message, file=sys.stderr, flush=True)


def step(message: str, enabled: bool | None = None) -> None:
    """A unit of long work is done (``reproduce-amtfl-school: amtfl given-2 done in 3.1 s``): a plain line
    when stderr is not a terminal (on a terminal the training bars show progress); ``enabled`` as for
    `progress_bar`."""
    if enabled is not False and not on_terminal():
        line(message)


@contextmanager
def scope(label: str) -> Iterator[None]:
    """Name the work done inside (``bench digits: hard-share seed-1``): a training run's progress within it
    is labelled with it."""
    _scopes.append(label)
    try:
        yield
    finally:
        _scopes.pop()


def current_scope() -> str | None:
    """The innermost `scope` label, or None."""
    return _scopes[-1] if _scopes else None


def training_label() -> str:
    """A training run's progress label: ``training``, or ``<scope>: training`` inside a `scope`."""
    s = current_scope()
    return f"{s}: training" if s else "training"


class QuietFlag(argparse.Action):
    """``--quiet``: no progress output for this command (results are still printed). Building a parser
    with it resets the flag, so one parse is one command even when `mtlkit.cli.main` runs several times
    in a process."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        kwargs.setdefault("help", "no progress output (bars on a terminal, progress lines otherwise) on stderr")
        kwargs.pop("nargs", None)
        kwargs.setdefault("default", False)
        super().__init__(option_strings, dest, nargs=0, **kwargs)
        set_quiet(False)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        setattr(namespace, self.dest, True)
        set_quiet(True)


class _Bar:
    """What a progress context hands out: ``advance(n, status)``."""

    def advance(self, n: int = 1, status: str | None = None) -> None:
        """``n`` more steps done; ``status`` tells what (shown beside the bar, or as the line)."""


class _RichBar(_Bar):
    def __init__(self, progress: Any, task: Any) -> None:
        self._p, self._t = progress, task

    def advance(self, n: int = 1, status: str | None = None) -> None:
        self._p.update(self._t, advance=n, **({"status": status} if status is not None else {}))


class _PlainBar(_Bar):
    """Plain lines: one per step (``every`` 0), or timed: only after ``every`` seconds, then at most one per
    ``every`` seconds."""

    def __init__(self, total: int, description: str, unit: str | None, every: float) -> None:
        self.total, self.description, self.unit, self.every = total, description, unit, every
        self.done = 0
        self.start = self.last = _clock()

    def advance(self, n: int = 1, status: str | None = None) -> None:
        self.done += n
        if self.every <= 0:
            line(f"{self.description}: {status}" if status else
                 f"{self.description}: {self.done}/{self.total}")
            return
        now = _clock()
        if now - self.start >= self.every and now - self.last >= self.every:
            self.last = now
            what = f"{self.unit} {self.done}/{self.total}" if self.unit else f"{self.done}/{self.total}"
            line(f"{self.description} {what} after {now - self.start:.0f} s" + (f", {status}" if status else ""))


@contextmanager
def progress_bar(total: int, description: str, enabled: bool | None = None, *, timed: bool = False,
                 unit: str | None = None) -> Iterator[_Bar]:
    """Progress of ``total`` steps: a rich bar on a terminal, plain lines otherwise (see the module's doc).

    ``timed``: off a terminal, print only once the work has gone on for `PLAIN_AFTER_S` seconds, then at
    most one line per `PLAIN_AFTER_S` (a training run's epochs); else one line per step. ``unit`` names
    the steps in timed lines (``epoch 40/200``)."""
    if enabled is False or _quiet:
        yield _Bar()
        return
    if enabled is None and not on_terminal():
        yield _PlainBar(total, description, unit, PLAIN_AFTER_S if timed else 0.0)
        return
    if _live:  # a bar is showing: this one becomes another line of the same display
        p = _live[-1]
        task = p.add_task(description, total=total, status="")
        try:
            yield _RichBar(p, task)
        finally:
            p.remove_task(task)
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    cols = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TimeRemainingColumn(), TextColumn("{task.fields[status]}"))
    with Progress(*cols, console=Console(stderr=True), transient=True) as p:
        _live.append(p)
        try:
            yield _RichBar(p, p.add_task(description, total=total, status=""))
        finally:
            _live.pop()
