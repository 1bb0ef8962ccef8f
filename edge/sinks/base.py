"""The sink contract: what the loop hands every output, and the guard that keeps a failing output
from stopping detection.

Every sink is wrapped in a :class:`GuardedSink`: an exception (disk full, peer unreachable) is
reported once as a ``sink_error`` status event, the sink is disabled, and it is reopened after a
backoff (1 s doubling to 60 s). A sink never stops detection, and never blocks the loop: an output
that can be slow (a network peer, a browser) hands its work to a thread of its own.
"""

from __future__ import annotations

import logging
import time
from abc import ABC
from collections.abc import Callable
from typing import Any

from stopsign.edge.vision.result import FrameResult

# One logger for every sink: the reliability docs quote its name.
log = logging.getLogger("stopsign.edge.sinks")

__all__ = ["FrameResult", "GuardedSink", "Sink"]


class Sink(ABC):  # noqa: B024 - every hook is optional
    """Receives frame results and events; hooks default to doing nothing."""

    name = "sink"

    def open(self) -> None:  # noqa: B027
        """Acquire the file/socket; called at start and on every retry."""

    def on_frame(self, result: FrameResult) -> None:  # noqa: B027
        """Called for every frame read (rejected ones included)."""

    def on_event(self, event: dict[str, Any]) -> None:  # noqa: B027
        """Called for every tracker event and status event."""

    def close(self) -> None:  # noqa: B027
        """Flush and release; idempotent."""


class GuardedSink:
    """Runs a sink's hooks; on failure reports it, disables the sink and retries after a backoff."""

    def __init__(
        self,
        sink: Sink,
        report: Callable[[str, dict[str, Any]], None],
        clock: Callable[[], float] = time.monotonic,
        retry_initial_s: float = 1.0,
        retry_max_s: float = 60.0,
    ) -> None:
        self.sink, self._report, self._clock = sink, report, clock
        self._retry_initial_s, self._retry_max_s = retry_initial_s, retry_max_s
        self._delay_s = retry_initial_s
        self.failures = 0
        self.disabled_until: float | None = None
        self._recovering = False  # reopened after a failure, no successful write yet

    @property
    def active(self) -> bool:
        if self.disabled_until is None:
            return True
        if self._clock() < self.disabled_until:
            return False
        return self._reopen()

    def open(self) -> None:
        self._call(self.sink.open)

    def on_frame(self, result: FrameResult) -> None:
        if self.active:
            self._call(self.sink.on_frame, result)

    def on_event(self, event: dict[str, Any]) -> None:
        if self.active:
            self._call(self.sink.on_event, event)

    def close(self) -> None:
        try:
            self.sink.close()
        except Exception as exc:  # closing a broken file (disk full) fails again: log it, go on
            log.warning("sink %s: close failed: %s", self.sink.name, exc)

    def _reopen(self) -> bool:
        self.close()
        self.disabled_until = None
        self._recovering = True
        return self._call(self.sink.open)

    def _call(self, hook: Callable[..., None], *args: Any) -> bool:
        try:
            hook(*args)
        except Exception as exc:  # any sink failure is contained here by design
            self.failures += 1
            self.disabled_until = self._clock() + self._delay_s
            retry_in = self._delay_s
            self._delay_s = min(self._delay_s * 2, self._retry_max_s)
            if not self._recovering:
                # Also on stderr, once per outage: when the failing sink is the events file
                # itself, the sink_error event below has nowhere else to go.
                log.warning(
                    "sink %s failed (%s: %s); retrying in %g s",
                    self.sink.name,
                    type(exc).__name__,
                    exc,
                    retry_in,
                )
            # Disabled before reporting: the report may reach this very sink.
            self._report(
                "sink_error",
                {"sink": self.sink.name, "error": f"{type(exc).__name__}: {exc}", "retry_in_s": retry_in},
            )
            return False
        if self._recovering and hook != self.sink.open:
            self._recovering = False
            self._delay_s = self._retry_initial_s
            self._report("sink_restored", {"sink": self.sink.name, "failures": self.failures})
        return True
