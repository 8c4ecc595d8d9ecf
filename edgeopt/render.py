"""How the CLI shows the library's events (:mod:`edgeopt.events`): live on a terminal, one line per stage otherwise.

On a terminal, a rich display keeps a spinner for the running stage and a bar for each long loop, and prints a
``done`` line as each stage ends. When stderr is a file or a pipe nothing is redrawn: each finished stage is one
line and progress steps are dropped, so a CI log reads as a list of stages.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

from edgeopt.events import Event, Message, Progress, StageFinished, StageStarted, summary

__all__ = ["ConsoleRenderer"]


class ConsoleRenderer:
    """A listener (:func:`edgeopt.events.listening`) that writes to stderr; use it as a context manager."""

    def __init__(self, quiet: bool = False, force_terminal: bool | None = None) -> None:
        """Print nothing when ``quiet``; ``force_terminal`` overrides rich's terminal detection (tests)."""
        from rich.console import Console

        self.console = Console(stderr=True, quiet=quiet, force_terminal=force_terminal, highlight=False)
        self.live = self.console.is_terminal and not quiet
        self._display: Any = None
        self._tasks: dict[str, Any] = {}

    def __enter__(self) -> ConsoleRenderer:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._display is not None:
            self._display.stop()
            self._display = None

    def __call__(self, event: Event) -> None:
        """Show one event."""
        if isinstance(event, StageFinished):
            self._clear()
            text = summary(event.details)
            # soft_wrap: a log line stays one line, whatever width rich guesses for a file.
            done = f"done {event.name} ({event.seconds:.1f} s){': ' + text if text else ''}"
            self.console.print(done, markup=False, soft_wrap=True)
        elif isinstance(event, Message):
            self.console.print(event.text, markup=False, style="bold", soft_wrap=True)
        elif self.live and isinstance(event, StageStarted):
            self._task(f"stage:{event.name}", event.name, total=None)
        elif self.live and isinstance(event, Progress):
            task = self._task(f"progress:{event.task}", event.task, total=event.total)
            from rich.markup import escape

            description = f"{event.task} ({event.detail})" if event.detail else event.task
            self._display.update(task, completed=event.done, total=event.total, description=escape(description))

    def _task(self, key: str, description: str, total: int | None) -> Any:
        from rich.markup import escape
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        if self._display is None:
            self._display = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=self.console,
                transient=True,
            )
            self._display.start()
        if key not in self._tasks:
            self._tasks[key] = self._display.add_task(escape(description), total=total)
        return self._tasks[key]

    def _clear(self) -> None:
        if self._display is not None:
            for task in self._tasks.values():
                self._display.remove_task(task)
        self._tasks.clear()
