"""Stage timings and the 1 Hz health figures (fps, latency percentiles, drop rate)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from stopsign.edge.vision.result import STAGES, FrameTimings

__all__ = ["STAGES", "FrameTimings", "HealthWindow", "health_line"]


@dataclass
class HealthWindow:
    """Accumulates one reporting interval; :meth:`snapshot` returns the figures and starts a new one."""

    budget_ms: float
    latencies: list[float] = field(default_factory=list)
    processed: int = 0
    rejected: int = 0
    backend_errors: int = 0
    over_budget: int = 0
    _dropped_at_start: int = 0
    _delivered_at_start: int = 0
    _start_ns: int = 0

    def start(self, now_ns: int, dropped: int, delivered: int) -> None:
        self.latencies.clear()
        self.processed = self.rejected = self.backend_errors = self.over_budget = 0
        self._start_ns, self._dropped_at_start, self._delivered_at_start = now_ns, dropped, delivered

    def add(self, timings: FrameTimings) -> None:
        self.processed += 1
        self.latencies.append(timings.latency)
        if timings.latency > self.budget_ms:
            self.over_budget += 1

    def snapshot(self, now_ns: int, dropped: int, delivered: int) -> dict[str, Any]:
        """Figures of the interval since :meth:`start` (latency in ms, rates per second)."""
        elapsed = max((now_ns - self._start_ns) / 1e9, 1e-9)
        dropped_now = dropped - self._dropped_at_start
        delivered_now = delivered - self._delivered_at_start
        produced = dropped_now + delivered_now
        lat = np.asarray(self.latencies, dtype=np.float64)
        return {
            "fps": round(self.processed / elapsed, 2),
            "p50_ms": round(float(np.percentile(lat, 50)), 2) if lat.size else None,
            "p99_ms": round(float(np.percentile(lat, 99)), 2) if lat.size else None,
            "budget_ms": self.budget_ms,
            "over_budget": self.over_budget,
            "drop_rate": round(dropped_now / produced, 4) if produced else 0.0,
            "dropped": dropped_now,
            "rejected": self.rejected,
            "backend_errors": self.backend_errors,
        }


def health_line(figures: dict[str, Any], backend: str, source_state: str) -> str:
    """One human-readable line for stderr."""

    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f}"

    return (
        f"[health] fps {figures['fps']:.1f} | latency p50 {ms(figures['p50_ms'])} p99 {ms(figures['p99_ms'])} ms "
        f"(budget {figures['budget_ms']:g}, over {figures['over_budget']}) | drops {figures['drop_rate']:.1%} | "
        f"rejected {figures['rejected']} | backend {backend} errors {figures['backend_errors']} | source {source_state}"
    )
