"""Latency and throughput measurement behind ``edge-bench``: model-only and end-to-end.

Model-only times ``backend.infer`` on one fixed preprocessed batch. End-to-end runs the real
``edge-detect`` pipeline (:func:`stopsign.edge.cli.detect.run_detect`: GStreamer source,
preprocess, backend, decode + NMS, tracker, sinks) and reads its per-frame stage timings from the
frame log, so the benchmark measures exactly what runs on the car. Warm-up frames are excluded.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from stopsign.edge.backends.base import Backend, BackendOptions, resolve_backend
from stopsign.edge.cli.detect_config import DetectConfig
from stopsign.edge.spec import ModelSpec

PERCENTILES = {"min": 0, "p50": 50, "p90": 90, "p99": 99, "max": 100}
E2E_STAGES = ("capture_age", "preprocess", "infer", "postprocess", "track", "total")


@dataclass
class BenchRun:
    """One configuration's result; ``to_dict`` gives the documented JSON layout."""

    mode: str  # "model" or "e2e"
    backend: str
    precision: str
    img: int
    batch: int
    frames: int
    wall_s: float
    latencies_ms: list[float]
    stages_ms: dict[str, float | None] = field(default_factory=dict)
    rss_mb: float = 0.0
    cpu_percent: float = 0.0
    device_memory_mb: float | None = None
    model: str = ""
    frame_stages: list[dict[str, float | None]] = field(default_factory=list)  # e2e, per frame (not in JSON)

    @property
    def fps(self) -> float:
        return self.frames * self.batch / self.wall_s if self.wall_s > 0 else 0.0

    def latency_summary(self) -> dict[str, float]:
        values = np.asarray(self.latencies_ms, np.float64)
        return (
            {k: round(float(np.percentile(values, p)), 3) for k, p in PERCENTILES.items()}
            if len(values)
            else {}
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mode": self.mode, "backend": self.backend, "precision": self.precision, "img": self.img,
            "batch": self.batch, "frames": self.frames, "fps": round(self.fps, 2), "wall_s": round(self.wall_s, 4),
            "latency_ms": self.latency_summary(), "rss_mb": round(self.rss_mb, 1),
            "cpu_percent": round(self.cpu_percent, 1), "device_memory_mb": self.device_memory_mb, "model": self.model,
        }  # fmt: skip
        if self.mode == "e2e":
            out["stages_ms"] = self.stages_ms
        return out


def rss_mb() -> float:
    """Current resident set size (Linux /proc), else the peak from getrusage."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass  # not Linux: fall back to the peak below
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _device_memory_mb() -> float | None:
    torch = __import__("sys").modules.get("torch")
    if torch is None or not torch.cuda.is_available():
        return None
    return round(torch.cuda.max_memory_allocated() / 2**20, 1)


def load(model: Path, backend: str, threads: int = 0) -> tuple[Backend, ModelSpec]:
    instance = resolve_backend(backend, model)()
    spec = instance.load(model, None, BackendOptions(threads=threads))
    return instance, spec


def bench_model(
    model: Path, backend: str, frames: int, warmup: int, batch: int = 1, threads: int = 0
) -> BenchRun:
    """Model-only: ``infer`` on one fixed (batch, 3, H, W) input, ``warmup`` calls excluded."""
    runner, spec = load(model, backend, threads)
    h, w = spec.input_size
    batch_input = np.random.default_rng(0).random((batch, 3, h, w), dtype=np.float32)
    try:
        for _ in range(warmup):
            runner.infer(batch_input)
        latencies = []
        cpu0, start = _cpu_seconds(), time.perf_counter()
        for _ in range(frames):
            t0 = time.perf_counter()
            runner.infer(batch_input)
            latencies.append((time.perf_counter() - t0) * 1e3)
        wall = time.perf_counter() - start
        cpu = _cpu_seconds() - cpu0
    finally:
        runner.close()
    name = runner.describe().get("backend", backend)
    return BenchRun("model", str(name), spec.precision, h, batch, frames, wall, latencies, rss_mb=rss_mb(),
                    cpu_percent=100 * cpu / wall, device_memory_mb=_device_memory_mb(), model=str(model))  # fmt: skip


def bench_e2e(model: Path, backend: str, source: str, frames: int, warmup: int, threads: int = 0) -> BenchRun:
    """End-to-end through the real pipeline; per-frame stage timings from its frame log."""
    from stopsign.edge.cli.detect import load_backend, run_detect

    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "frames.jsonl"
        config = DetectConfig(
            source=source, model=str(model), backend=backend, threads=threads, max_frames=warmup + frames + 1,
            log_frames=str(log), events=str(Path(tmp) / "events.jsonl"), health=False, reject_identical=False,
        )  # fmt: skip
        config.validate()
        holder: dict[str, Any] = {}

        def factory(cfg: DetectConfig) -> tuple[Backend, ModelSpec]:
            holder["backend"], holder["spec"] = load_backend(cfg)
            return holder["backend"], holder["spec"]

        cpu0 = _cpu_seconds()
        run_detect(config, threading.Event(), backend_factory=factory)
        cpu = _cpu_seconds() - cpu0
        records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    # frames + 1 processed frames after warm-up: ``frames`` intervals between their capture times.
    processed = [r for r in records if r["rejected"] is None]
    if len(processed) < warmup + frames + 1:
        rejected = len(records) - len(processed)
        raise RuntimeError(
            f"end-to-end run processed {len(processed)} frames ({rejected} rejected by frame sanity), "
            f"need warm-up {warmup} + {frames} + 1: is the source long enough and not black or frozen?"
        )
    wall = (processed[warmup + frames]["monotonic_ns"] - processed[warmup]["monotonic_ns"]) / 1e9
    measured = processed[warmup + 1 : warmup + frames + 1]
    stages = {s: [r["ms"][s] for r in measured if r["ms"].get(s) is not None] for s in E2E_STAGES}
    latencies = [r["ms"]["total"] + (r["ms"].get("capture_age") or 0.0) for r in measured]
    spec: ModelSpec = holder["spec"]
    name = holder["backend"].describe().get("backend", backend)
    return BenchRun(
        "e2e", str(name), spec.precision, spec.input_size[0], 1, frames, wall, latencies,
        stages_ms={s: (round(float(np.median(v)), 3) if v else None) for s, v in stages.items()},
        rss_mb=rss_mb(), cpu_percent=100 * cpu / max(wall, 1e-9), device_memory_mb=_device_memory_mb(), model=str(model),
        frame_stages=[r["ms"] for r in measured],
    )  # fmt: skip


def machine_info() -> dict[str, Any]:
    """CPU, OS and, on a Jetson, the power mode and clocks (where the tools answer)."""
    info: dict[str, Any] = {
        "hostname": platform.node(), "platform": platform.platform(), "machine": platform.machine(),
        "processor": platform.processor(), "cpu_count": os.cpu_count(),
    }  # fmt: skip
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass  # not Linux
    for key, command in (("nvpmodel", ["nvpmodel", "-q"]), ("jetson_clocks", ["jetson_clocks", "--show"])):
        if shutil.which(command[0]):
            try:
                info[key] = subprocess.run(command, capture_output=True, text=True, timeout=10).stdout.strip()
            except (OSError, subprocess.SubprocessError) as exc:
                info[key] = f"unreadable: {exc}"
    return info


def library_versions() -> dict[str, str | None]:
    from importlib import metadata

    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in (
        "numpy",
        "opencv-python-headless",
        "onnxruntime",
        "onnxruntime-gpu",
        "torch",
        "tensorrt",
        "PyGObject",
    ):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions
