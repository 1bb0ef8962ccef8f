"""Live mode with inference slower than the camera: capture age must stay bounded (no backlog).

    .venv/bin/python bench/live_capture_age.py --model model.onnx --seconds 60 --delay-ms 100

A 60 fps test source feeds the real ONNX Runtime backend slowed by --delay-ms per inference;
prints capture-age percentiles over the run and per 10 s window (a backlog would grow them).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from stopsign.edge.backends.base import Backend, BackendOptions
from stopsign.edge.backends.onnxruntime import OnnxRuntimeBackend
from stopsign.edge.cli.detect import run_detect
from stopsign.edge.cli.detect_config import DetectConfig
from stopsign.edge.model.spec import ModelSpec


class SlowBackend(OnnxRuntimeBackend):
    """ONNX Runtime plus a fixed sleep: a stand-in for a device slower than the camera."""

    def __init__(self, delay_s: float) -> None:
        super().__init__()
        self.delay_s = delay_s

    def infer(self, batch: np.ndarray) -> np.ndarray:
        time.sleep(self.delay_s)
        return super().infer(batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--delay-ms", type=float, default=100.0)
    parser.add_argument("--source", default="test://?size=640x480&fps=60")
    args = parser.parse_args()

    def factory(config: DetectConfig) -> tuple[Backend, ModelSpec]:
        backend = SlowBackend(args.delay_ms / 1000)
        return backend, backend.load(config.model, None, BackendOptions(device="cpu"))

    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "frames.jsonl"
        config = DetectConfig(
            source=args.source,
            model=args.model,
            log_frames=str(log),
            events=str(Path(tmp) / "e.jsonl"),
            health=False,
            budget_ms=1e6,
        )
        stop = threading.Event()
        threading.Timer(args.seconds, stop.set).start()
        run_detect(config, stop, factory)
        records = [json.loads(x) for x in log.read_text().splitlines()]
    ages = np.array([r["ms"]["capture_age"] for r in records])
    t = (np.array([r["monotonic_ns"] for r in records]) - records[0]["monotonic_ns"]) / 1e9
    report = {
        "frames": len(ages),
        "p50_ms": float(np.percentile(ages, 50)),
        "p99_ms": float(np.percentile(ages, 99)),
        "max_ms": float(ages.max()),
    }
    report["per_10s_p99_ms"] = [
        round(float(np.percentile(ages[(t >= s) & (t < s + 10)], 99)), 2)
        for s in range(0, int(t[-1]), 10)
        if ((t >= s) & (t < s + 10)).any()
    ]
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
