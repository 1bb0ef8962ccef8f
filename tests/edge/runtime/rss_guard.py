"""The leak guard's measured process: the real loop on a tiny model, RSS sampled by frame count.

Run as ``python -m tests.edge.runtime.rss_guard MODEL OUT_DIR --frames N [--leak-bytes B]``
from the repository root; prints one JSON object: ``{"frames": N, "samples": [[frame, rss_mb],
...]}``. It runs in a fresh interpreter because that is what a car runs: measured inside pytest
after a thousand other tests, the RSS also moves with whatever those tests left in glibc's heap
(CI saw 4 MB of such steps in 6k frames that a fresh process never shows).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np

from stopsign.edge.backends.base import Backend
from stopsign.edge.cli.detect import load_backend, run_detect
from stopsign.edge.cli.detect_config import DetectConfig
from stopsign.edge.model.spec import ModelSpec


def rss_mb() -> float:
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class RssSampler:
    """Wraps the backend: counts frames and samples RSS; ``leak`` keeps that many bytes a frame."""

    def __init__(self, inner: Backend, leak: int, every: int) -> None:
        self._inner, self._leak, self._every = inner, leak, every
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
        if self.frames % self._every == 0:
            self.samples.append((self.frames, rss_mb()))

    def infer(self, batch: np.ndarray) -> np.ndarray:
        self._count()
        return self._inner.infer(batch)

    def infer_images(self, images: np.ndarray) -> np.ndarray:
        self._count()
        return self._inner.infer_images(images)


def measure(model: Path, out_dir: Path, frames: int, every: int, leak: int, size: str) -> RssSampler:
    samplers: list[RssSampler] = []

    def factory(config: DetectConfig) -> tuple[Backend, ModelSpec]:
        backend, spec = load_backend(config)
        samplers.append(RssSampler(backend, leak, every))
        return samplers[-1], spec  # type: ignore[return-value]

    config = DetectConfig(
        source=f"test://?pattern=ball&size={size}&live=0&num-buffers={frames}",
        model=str(model), backend="onnxruntime", events=str(out_dir / "events.jsonl"),
        detections=str(out_dir / "detections.jsonl"), health=False,
    )  # fmt: skip
    config.validate()
    code = run_detect(config, threading.Event(), backend_factory=factory)
    if code != 0:
        raise SystemExit(f"edge-detect's loop ended with exit code {code}")
    return samplers[-1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--frames", type=int, default=20_000)
    parser.add_argument("--every", type=int, default=1_000, help="sample RSS every N frames")
    parser.add_argument("--leak-bytes", type=int, default=0, help="keep this many bytes a frame")
    parser.add_argument("--size", default="160x120", help="test source's frame size, WxH")
    args = parser.parse_args(argv)
    sampler = measure(args.model, args.out_dir, args.frames, args.every, args.leak_bytes, args.size)
    json.dump({"frames": sampler.frames, "samples": sampler.samples}, sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
