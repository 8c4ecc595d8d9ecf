"""Progress as events: the library says what it is doing, whoever called it decides how to show it.

A build emits :class:`StageStarted` / :class:`StageFinished` around each stage, :class:`Progress` inside long loops
(fine-tuning, teacher labeling) and :class:`Message` for a line worth reading (where the bundle went). The listener
is per context (:func:`listening`), so a library caller gets ``logging`` records (logger ``edgeopt``, one INFO line
per stage, nothing per progress step) without passing anything, and the CLI installs its own renderer: rich spinners
and bars on a terminal, one line per stage when the output is a file.

Rejected: a ``quiet``/``progress`` flag threaded through every call (the library then decides how output looks, and
a log file got a progress-bar redraw every 0.1 s from tqdm), and a listener argument on every function (the teacher's
batching helpers are four calls below ``build()``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, TypeVar

__all__ = [
    "Event",
    "Listener",
    "Message",
    "Progress",
    "StageFinished",
    "StageStarted",
    "emit",
    "listening",
    "log_event",
    "ProgressCounter",
    "progress",
    "summary",
]

logger = logging.getLogger("edgeopt")

PROGRESS_INTERVAL_S = 0.25
"""Least time between two Progress events of one loop (its first and last step are always emitted)."""


@dataclass(frozen=True)
class StageStarted:
    """A stage began."""

    name: str


@dataclass(frozen=True)
class StageFinished:
    """A stage ended; ``details`` are what it reports (counts, sizes, chosen settings)."""

    name: str
    seconds: float
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Progress:
    """``done`` of ``total`` steps of a long loop."""

    task: str
    done: int
    total: int
    unit: str
    detail: str = ""


@dataclass(frozen=True)
class Message:
    """A line meant for the person who started the work."""

    text: str


Event = StageStarted | StageFinished | Progress | Message
Listener = Callable[[Event], None]


def summary(details: Mapping[str, Any]) -> str:
    """A stage's scalar details as ``key value, key value`` (floats to 4 significant digits)."""
    return ", ".join(
        f"{key} {value:.4g}" if isinstance(value, float) else f"{key} {value}"
        for key, value in details.items()
        if not isinstance(value, dict | list | tuple)
    )


def log_event(event: Event) -> None:
    """The default listener: one ``logging`` INFO record per finished stage and per message."""
    if isinstance(event, StageFinished):
        text = summary(event.details)
        logger.info("done %s (%.1f s)%s", event.name, event.seconds, f": {text}" if text else "")
    elif isinstance(event, Message):
        logger.info("%s", event.text)
    elif isinstance(event, StageStarted):
        logger.debug("start %s", event.name)


_listener: ContextVar[Listener] = ContextVar("edgeopt_listener", default=log_event)


@contextmanager
def listening(listener: Listener) -> Iterator[None]:
    """Send the events emitted inside the block to ``listener`` instead of ``logging``."""
    token = _listener.set(listener)
    try:
        yield
    finally:
        _listener.reset(token)


def emit(event: Event) -> None:
    """Hand ``event`` to the current listener."""
    _listener.get()(event)


class ProgressCounter:
    """Counts a loop's steps and emits :class:`Progress` at its start, at most every 0.25 s, and at its end."""

    def __init__(
        self, task: str, total: int, unit: str, enabled: bool = True, clock: Callable[[], float] = time.monotonic
    ) -> None:
        """Emit the 0-of-``total`` event (unless ``enabled`` is False: then nothing is ever emitted)."""
        self.task, self.total, self.unit, self.enabled, self._clock = task, total, unit, enabled, clock
        self.done = 0
        self._last = clock()
        if enabled:
            emit(Progress(task, 0, total, unit))

    def advance(self, steps: int = 1, detail: str = "") -> None:
        """Count ``steps`` more; ``detail`` (say, the running loss) travels with the event."""
        self.done += steps
        now = self._clock()
        if self.enabled and (self.done >= self.total or now - self._last >= PROGRESS_INTERVAL_S):
            emit(Progress(self.task, self.done, self.total, self.unit, detail))
            self._last = now


T = TypeVar("T")


def progress(items: Iterable[T], total: int, task: str, unit: str, enabled: bool = True) -> Iterator[T]:
    """Yield ``items``, counting each with a :class:`ProgressCounter` (``enabled`` False: emit nothing)."""
    counter = ProgressCounter(task, total, unit, enabled)
    for item in items:
        yield item
        counter.advance()
