"""The source interface every frame provider implements, and its options and errors."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from stopsign.edge.sources.launch import CameraOptions
from stopsign.edge.vision.frame import Frame

# report(kind, fields): a status event for the event channel (e.g. "source_stalled", {...}).
StatusReport = Callable[[str, dict[str, Any]], None]


class SourceError(RuntimeError):
    """A source failed in a way the run cannot recover from; the message names the source."""


class SourceOpenError(SourceError):
    """A source could not be opened; the message names the device/file and GStreamer's error."""


@dataclass(frozen=True)
class SourceOptions:
    """How to read a source.

    Attributes:
        camera: requested camera mode for v4l2/csi.
        live: force live (newest frame only) or ordered delivery; None decides from the source
            (GStreamer's NO_PREROLL answer: cameras, RTSP and paced test sources are live).
        stall_timeout_s: no frame for this long from a live source -> stalled, rebuild.
        open_timeout_s: how long the first frame may take when opening or rebuilding.
        backoff_initial_s, backoff_max_s: rebuild delays double from the first to the second.
            The cap is short: a reconnect attempt costs little, and a camera that is back should
            be seen within about a second (docs/reliability.md).
        endless: the stream has no end (a camera, a network camera): end-of-stream means the
            device or the link went away, so it is a fault to recover from, not the end.
    """

    camera: CameraOptions = field(default_factory=CameraOptions)
    live: bool | None = None
    stall_timeout_s: float = 0.5
    open_timeout_s: float = 5.0
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 1.0
    endless: bool = False

    def __post_init__(self) -> None:
        for name in ("stall_timeout_s", "open_timeout_s", "backoff_initial_s", "backoff_max_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"SourceOptions.{name} must be > 0, got {getattr(self, name)}")
        if self.backoff_max_s < self.backoff_initial_s:
            raise ValueError("SourceOptions.backoff_max_s must be >= backoff_initial_s")


class Source(ABC):
    """A stream of :class:`Frame` objects.

    ``read`` returns the next frame (live sources: the newest one), or None when none arrived
    within ``timeout_s`` or the stream ended (then ``eos`` is True). Faults a source can recover
    from are reported through ``report``; unrecoverable ones raise :class:`SourceError`.
    """

    live: bool = False
    description: str = ""

    @abstractmethod
    def open(self) -> None: ...

    @abstractmethod
    def read(self, timeout_s: float) -> Frame | None: ...

    @property
    @abstractmethod
    def eos(self) -> bool: ...

    @property
    def dropped(self) -> int:
        """Frames the source produced but the consumer never got (live sources)."""
        return 0

    @property
    def state(self) -> str:
        """ "running", "stalled", "rebuilding", "eos" or "closed"."""
        return "eos" if self.eos else "running"

    @property
    def fps(self) -> float | None:
        """Nominal frame rate when known (for the annotated video)."""
        return None

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the device; idempotent."""
