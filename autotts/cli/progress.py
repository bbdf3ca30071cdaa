"""Progress as people see it: a rich bar on a terminal, plain lines in logs and batch jobs.
Every stage longer than a few seconds counts what it has done."""

from __future__ import annotations

import time
from contextlib import contextmanager

from .common import err_console

DESCRIPTION = "[progress.description]{task.description}"


class PlainProgress:
    """Progress for logs and batch jobs (stderr not a terminal): a plain line at most every
    ``every_s`` seconds and one at the end, instead of a bar nobody sees."""

    def __init__(self, description: str, every_s: float = 10.0):
        self.description, self.every_s = description, every_s
        self.start = self.last = time.monotonic()

    def __call__(self, done: int, total: int | None) -> None:
        now = time.monotonic()
        if done == 0 or (now - self.last < self.every_s and done != total):
            return
        self.last = now
        share = f" ({100 * done / total:.0f} %)" if total else ""
        err_console.print(
            f"{self.description}: {done}/{total or '?'}{share}, {now - self.start:.0f} s elapsed",
            highlight=False,
        )


@contextmanager
def counting(what: str):
    """A transient bar (or plain lines) for one counted job; yields ``progress(done, total)``."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    terminal = err_console.is_terminal
    columns = (BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(
        DESCRIPTION, *columns, console=err_console, transient=True, disable=not terminal
    ) as bar:
        task = bar.add_task(what, total=None)
        plain = PlainProgress(f"evaluating {what}")

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)
            if not terminal:
                plain(done, total)

        progress.bar = bar
        yield progress


# What each stage counts, as its progress line says it
STAGES = {
    "search": "search",
    "windows": "windows: trials",
    "race": "race: environments",
    "family": "family: environments, then SC@64 units",
    "heldout": "held-out: environments, then SC@64 units",
}


class DiscoveryProgress:
    """The discovery progress bar: search trials, then each later stage; LLM rounds as lines."""

    def __init__(self, err_console, trials: int):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        self.console = err_console
        self.bar = Progress(
            DESCRIPTION,
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err_console,
            disable=not err_console.is_terminal,
        )
        self.plain = None if err_console.is_terminal else PlainProgress("search trials")
        self.trials, self.stage = trials, "search"

    def __enter__(self):
        self.bar.__enter__()
        self.task = self.bar.add_task("search", total=self.trials)
        return self

    def __exit__(self, *exc):
        return self.bar.__exit__(*exc)

    def progress(self, done: int, total: int, point) -> None:
        text = self.stage
        if point is not None:
            text = f"search (last: {point.accuracy:.2f}% @ {point.tokens / 1000:.0f}k)"
        self.bar.update(self.task, completed=done, total=total, description=text)
        if self.plain:
            self.plain(done, total)

    def log(self, text: str) -> None:
        if text in STAGES:  # a stage starts: its own counts on the same bar
            self.stage = STAGES[text]
            self.bar.update(self.task, description=self.stage, completed=0, total=None)
            if self.plain:
                self.console.print(f"stage: {text}", highlight=False)
                self.plain = PlainProgress(self.stage)
        else:
            self.console.print(text, highlight=False)


__all__ = ["DiscoveryProgress", "PlainProgress", "STAGES", "counting"]
