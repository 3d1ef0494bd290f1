"""What `igny8` shows while it works: a line per step, a live board of what it waits for
on a terminal, and "still waiting for ..." lines when the output is a file or a pipe, so
it is never silent."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn

from igny8.supervisor import Child


def make_console() -> Console:
    # soft_wrap: URLs are printed whole, whatever the width, so scripts can grep them.
    return Console(soft_wrap=True, highlight=False)


@dataclass
class Reporter:
    console: Console

    def say(self, message: str) -> None:
        self.console.print(f"[cyan]•[/] {message}")

    def done(self, message: str) -> None:
        self.console.print(f"[green]✓[/] {message}")

    def warn(self, message: str) -> None:
        self.console.print(f"[yellow]![/] {message}")

    def fail(self, message: str) -> None:
        self.console.print(f"[red]✗[/] {message}")

    @contextlib.contextmanager
    def step(self, message: str, done: str | None = None) -> Iterator[None]:
        """A spinner while it runs (on a terminal), a line when it starts and ends."""
        started = time.monotonic()
        if not self.console.is_terminal:
            self.say(message + " ...")
        with self.console.status(message + " ..."):
            yield
        self.done(f"{done or message} ({time.monotonic() - started:.1f}s)")


def _path_of(url: str | None) -> str:
    if url is None:
        return "ready"
    rest = url.split("://", 1)[-1]
    return "/" + rest.split("/", 1)[1] if "/" in rest else rest


@dataclass
class HealthBoard:
    """Progress of the health checks: one bar per process on a terminal."""

    reporter: Reporter
    children: list[Child]
    quiet_interval: float = 5.0
    _progress: Progress | None = None
    _tasks: dict[str, TaskID] = field(default_factory=dict)
    _last_line: float = 0.0

    def __enter__(self) -> HealthBoard:
        console = self.reporter.console
        self.reporter.say("waiting for: " + ", ".join(
            f"{c.name} {_path_of(c.waiting_for())}" for c in self.children))
        if console.is_terminal:
            self._progress = Progress(
                SpinnerColumn(), TextColumn("{task.description}"), BarColumn(bar_width=12),
                TimeElapsedColumn(), console=console, transient=True,
            )
            self._progress.start()
            for child in self.children:
                self._tasks[child.name] = self._progress.add_task(
                    self._describe(child), total=max(1, len(child.spec.health)))
        self._last_line = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    @staticmethod
    def _describe(child: Child) -> str:
        return f"{child.name:<18} waiting for {_path_of(child.waiting_for())}"

    def ready(self, child: Child, elapsed: float) -> None:
        if self._progress is not None:
            self._progress.update(self._tasks[child.name], completed=len(child.spec.health),
                                  description=f"{child.name:<18} ready")
        self.reporter.done(f"{child.name} ready on port {child.spec.port} ({elapsed:.1f}s)")

    def tick(self, pending: list[Child], elapsed: float) -> None:
        if self._progress is not None:
            for child in pending:
                self._progress.update(self._tasks[child.name], completed=child.checks_passed,
                                      description=self._describe(child))
            return
        now = time.monotonic()
        if now - self._last_line >= self.quiet_interval:
            self._last_line = now
            self.reporter.say(f"still waiting ({elapsed:.0f}s) for: " + ", ".join(
                f"{c.name} {_path_of(c.waiting_for())}" for c in pending))
