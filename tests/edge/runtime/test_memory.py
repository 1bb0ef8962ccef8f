"""A regression guard against a per-frame leak: RSS after warm-up stays flat over 8k frames.

A car makes 2.6 million frames a day, so a leak of a few hundred bytes a frame ends in the OOM
killer within days. The guard runs the real loop (GStreamer test source, ONNX Runtime, tracker,
sinks) on a tiny model and samples the process's RSS every ``SAMPLE_EVERY`` frames; the second
test puts a deliberate 4 KiB-a-frame leak in and checks that the same guard catches it.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from stopsign.edge.backends.base import Backend
from stopsign.edge.cli.detect import load_backend, run_detect
from stopsign.edge.cli.detect_config import DetectConfig
from stopsign.edge.model.spec import ModelSpec
from tests.edge.helpers import requires_gstreamer

FRAMES = 8_000
WARMUP = 2_000
SAMPLE_EVERY = 1_000
# What the guard allows after warm-up: allocator steps of glibc's arenas are ~1 MB; a leak of
# 512 bytes a frame would already show as 2.9 MB over the measured 6k frames.
ALLOWED_GROWTH_MB = 3.0
LEAK_BYTES = 4096


def rss_mb() -> float:
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * 4096 / 2**20


class RssSampler:
    """Wraps the backend: counts frames and samples RSS; ``leak`` keeps that many bytes a frame."""

    def __init__(self, inner: Backend, leak: int) -> None:
        self._inner, self._leak = inner, leak
        self.kept: list[bytes] = []
        self.frames = 0
        self.samples: list[tuple[int, float]] = []

    def __getattr__(self, name: str) -> Any:  # everything else is the real backend's
        return getattr(self._inner, name)

    def _count(self) -> None:
        self.frames += 1
        if self._leak:
            # Random bytes, not bytes(n): calloc'd zero pages are not resident until written.
            self.kept.append(os.urandom(self._leak))
        if self.frames % SAMPLE_EVERY == 0:
            self.samples.append((self.frames, rss_mb()))

    def infer(self, batch: np.ndarray) -> np.ndarray:
        self._count()
        return self._inner.infer(batch)

    def infer_images(self, images: np.ndarray) -> np.ndarray:
        self._count()
        return self._inner.infer_images(images)


def growth_after_warmup(tiny_onnx: Path, tmp_path: Path, leak: int) -> tuple[float, RssSampler]:
    """RSS growth (MB) from the first sample after warm-up to the last, over a least-squares line
    (one allocator step at the end does not count as a slope)."""
    samplers: list[RssSampler] = []

    def factory(config: DetectConfig) -> tuple[Backend, ModelSpec]:
        backend, spec = load_backend(config)
        samplers.append(RssSampler(backend, leak))
        return samplers[-1], spec  # type: ignore[return-value]

    config = DetectConfig(
        source=f"test://?pattern=ball&size=160x120&live=0&num-buffers={FRAMES}",
        model=str(tiny_onnx), backend="onnxruntime", events=str(tmp_path / "events.jsonl"),
        detections=str(tmp_path / "detections.jsonl"), health=False,
    )  # fmt: skip
    config.validate()
    assert run_detect(config, threading.Event(), backend_factory=factory) == 0
    sampler = samplers[-1]
    assert sampler.frames == FRAMES
    measured = [(n, mb) for n, mb in sampler.samples if n >= WARMUP]
    frames, mb = np.array(measured).T
    slope_per_frame = np.polyfit(frames, mb, 1)[0]
    return float(slope_per_frame * (frames[-1] - frames[0])), sampler


@pytest.mark.slow
@requires_gstreamer
def test_rss_stays_flat_after_warmup(tiny_onnx: Path, tmp_path: Path) -> None:
    growth, sampler = growth_after_warmup(tiny_onnx, tmp_path, leak=0)
    assert growth < ALLOWED_GROWTH_MB, f"RSS grew {growth:.2f} MB after warm-up: {sampler.samples}"


@pytest.mark.slow
@requires_gstreamer
def test_the_guard_catches_a_deliberate_leak(tiny_onnx: Path, tmp_path: Path) -> None:
    growth, sampler = growth_after_warmup(tiny_onnx, tmp_path, leak=LEAK_BYTES)
    leaked_mb = LEAK_BYTES * (FRAMES - WARMUP) / 2**20
    assert growth >= ALLOWED_GROWTH_MB, f"a {leaked_mb:.1f} MB leak went unseen: {sampler.samples}"
    # Memory freed earlier in the process is reused first, so not all of it shows; never more.
    assert growth <= 1.5 * leaked_mb
