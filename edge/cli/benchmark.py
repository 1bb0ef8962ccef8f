"""Latency and throughput measurement behind ``edge-bench``: model-only and end-to-end.

Model-only times ``backend.infer`` on one fixed preprocessed batch. End-to-end runs the real
``edge-detect`` pipeline (:func:`stopsign.edge.cli.detect.run_detect`: GStreamer source,
preprocess, backend, decode + NMS, tracker, sinks) and reads its per-frame stage timings from the
frame log, so the benchmark measures exactly what runs on the car. Warm-up frames are excluded.
"""

from __future__ import annotations

import json
import resource
import tempfile
import threading
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from stopsign.edge.backends.base import Backend, BackendError, BackendOptions, resolve_model
from stopsign.edge.cli.detect_config import DetectConfig
from stopsign.edge.cli.machine import rss_mb
from stopsign.edge.model.spec import ModelSpec, ModelSpecError

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
    cpu_s: float | None = None  # process CPU seconds over the measured window (all threads)
    device_memory_mb: float | None = None
    model: str = ""
    source: str = ""  # e2e: the source URI
    live: bool | None = None  # e2e: live source (latency includes capture age) or ordered
    tiles: str = "none"  # e2e: the --tiles setting; images per frame = batch (1 + tiles)
    # e2e: frames per second the source was paced at (0: back to back; None: the source's own rate)
    rate: float | None = None
    frame_stages: list[dict[str, float | None]] = field(default_factory=list)  # e2e, per frame (not in JSON)
    # What the backend was given: "float32" network inputs or "uint8" letterboxed images (image_input)
    model_input: str = "float32"
    backend_options: dict[str, str] = field(default_factory=dict)  # --backend-option pairs given

    @property
    def fps(self) -> float:
        """Images per second model-only (batch x calls); frames per second end to end (a frame's
        tiles are part of that frame)."""
        per_call = self.batch if self.mode == "model" else 1
        return self.frames * per_call / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def cpu_percent(self) -> float | None:
        """Process CPU time over the measured wall time (200 = two cores busy)."""
        return 100 * self.cpu_s / self.wall_s if self.cpu_s is not None and self.wall_s > 0 else None

    @property
    def cpu_ms_per_frame(self) -> float | None:
        """Process CPU time per measured call or frame: what the run costs, whatever else is running."""
        return 1e3 * self.cpu_s / self.frames if self.cpu_s is not None and self.frames else None

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
            "cpu_percent": _round(self.cpu_percent, 1), "cpu_ms_per_frame": _round(self.cpu_ms_per_frame, 3),
            "device_memory_mb": self.device_memory_mb, "model": self.model, "model_input": self.model_input,
        }  # fmt: skip
        if self.backend_options:
            out["backend_options"] = self.backend_options
        if self.mode == "e2e":
            out.update(
                stages_ms=self.stages_ms,
                source=self.source,
                live=self.live,
                tiles=self.tiles,
                rate_fps=self.rate,
            )
        return out


def _round(value: float | None, digits: int) -> float | None:
    return round(value, digits) if value is not None else None


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _device_memory_mb() -> float | None:
    torch = __import__("sys").modules.get("torch")
    if torch is None or not torch.cuda.is_available():
        return None
    return round(torch.cuda.max_memory_allocated() / 2**20, 1)


def model_file_spec(model: Path) -> tuple[int, str]:
    """(input size px, precision) of a model, read without loading it: ONNX metadata, the TensorRT
    engine's sidecar (whose precision is the engine's, not the ONNX file's) or a checkpoint folder's
    spec.json (the torch backend may still run it in FP16: runs report what actually ran)."""
    if model.is_dir():
        spec_file = model / "spec.json"
        if not spec_file.is_file():
            raise ModelSpecError(f"{model}: a folder but not a checkpoint (no spec.json)")
        spec = ModelSpec.from_json(spec_file.read_text(), source=str(spec_file))
        return spec.input_size[0], spec.precision
    if model.suffix == ".engine":
        from stopsign.edge.model.engine_sidecar import EngineSidecarError, read_sidecar

        try:
            sidecar = read_sidecar(model)
        except EngineSidecarError as exc:
            raise ModelSpecError(str(exc)) from None
        return sidecar.model_spec.input_size[0], sidecar.precision
    if model.suffix == ".xml":  # an OpenVINO IR: its sidecar holds the spec (edge-calibrate openvino)
        from stopsign.edge.model.openvino_ir import read_ir_spec

        spec = read_ir_spec(model)
        return spec.input_size[0], spec.precision
    from stopsign.edge.model.onnx_meta import read_spec_from_onnx

    spec = read_spec_from_onnx(model)
    return spec.input_size[0], spec.precision


def load(
    model: Path, backend: str, threads: int = 0, properties: dict[str, str] | None = None
) -> tuple[Backend, ModelSpec]:
    cls, path = resolve_model(backend, model)
    instance = cls()
    spec = instance.load(
        path, None, BackendOptions(threads=threads, properties=tuple((properties or {}).items()))
    )
    return instance, spec


class FixedBatchError(BackendError):
    """The model's batch axis is fixed and the benchmark asked for another batch size."""


def _precision(backend: Backend, spec: ModelSpec) -> str:
    """What actually runs: the backend's own answer (torch may run an FP32 file in FP16), else the file's."""
    return str(backend.describe().get("precision", spec.precision))


def bench_model(
    model: Path,
    backend: str,
    frames: int,
    warmup: int,
    batch: int = 1,
    threads: int = 0,
    duration_s: float | None = None,
    properties: dict[str, str] | None = None,
) -> BenchRun:
    """Model-only: the backend on one fixed input, ``warmup`` calls excluded. The input is what the
    detection loop gives that backend: a (batch, 3, H, W) float32 network input, or for a backend
    with ``image_input`` a (batch, H, W, 3) uint8 letterboxed image batch (``infer_images``), so
    end-to-end minus model-only is the work around the model, and the conversion the model does
    counts as the model's.

    ``frames`` calls are timed, or, with ``duration_s``, as many calls as fit in that many seconds.
    Raises :class:`FixedBatchError` when ``batch`` > 1 and the model only takes its own batch size.
    """
    runner, spec = load(model, backend, threads, properties)
    h, w = spec.input_size
    rng = np.random.default_rng(0)
    batch_input: np.ndarray
    if runner.image_input:
        batch_input = rng.integers(0, 256, (batch, h, w, 3), dtype=np.uint8)
        run = runner.infer_images
    else:
        batch_input = rng.random((batch, 3, h, w), dtype=np.float32)
        run = runner.infer
    try:
        if runner.fixed_batch is not None and runner.fixed_batch != batch:
            raise FixedBatchError(
                f"{model}: its graph fixes the batch at {runner.fixed_batch}, asked {batch}; export with a "
                "dynamic batch (`edge-export onnx --dynamic` or `edge-export dynamic-batch`) to measure throughput"
            )
        try:
            run(batch_input)  # the first call also checks that the batch size is accepted
        except Exception as exc:  # each runtime raises its own shape error type
            if batch == 1:
                raise
            raise FixedBatchError(
                f"{model}: batch {batch} rejected by {runner.name} ({type(exc).__name__}); "
                "export with a dynamic batch (`edge-export onnx --dynamic`) to measure throughput"
            ) from None
        for _ in range(max(0, warmup - 1)):
            run(batch_input)
        latencies: list[float] = []
        cpu0, start = _cpu_seconds(), time.perf_counter()
        end = start + duration_s if duration_s else None
        while (len(latencies) < frames) if end is None else (time.perf_counter() < end or len(latencies) < 2):
            t0 = time.perf_counter()
            run(batch_input)
            latencies.append((time.perf_counter() - t0) * 1e3)
        wall = time.perf_counter() - start
        cpu = _cpu_seconds() - cpu0
        precision = _precision(runner, spec)
    finally:
        runner.close()
    name = runner.describe().get("backend", backend)
    return BenchRun("model", str(name), precision, h, batch, len(latencies), wall, latencies, rss_mb=rss_mb(),
                    cpu_s=cpu, device_memory_mb=_device_memory_mb(), model=str(model),
                    model_input="uint8" if runner.image_input else "float32",
                    backend_options=dict(properties or {}))  # fmt: skip


class _MeasuredBackend(Backend):
    """Wraps the pipeline's backend to mark the measured window without touching the loop.

    Call ``warmup + 1`` (the first measured frame) samples the process CPU clock; so does every
    later call, so the window's CPU time ends at the last measured frame. With ``duration_s`` the
    wrapper sets ``stop`` once that much time has passed since the first measured frame.
    """

    def __init__(self, inner: Backend, warmup: int, duration_s: float | None, stop: threading.Event) -> None:
        self.inner, self.name = inner, inner.name
        self.output_suppressed, self.image_input = inner.output_suppressed, inner.image_input
        self._warmup, self._duration_s, self._stop = warmup, duration_s, stop
        self.calls = 0
        self.images_per_call = 1  # batch of the last call: the whole frame + its tiles
        self.cpu_start: float | None = None
        self.cpu_end: float | None = None
        self._start = 0.0

    @classmethod
    def is_available(cls) -> bool:
        return True

    def load(self, model_path: str | Path, spec: ModelSpec | None, options: BackendOptions) -> ModelSpec:
        return self.inner.load(model_path, spec, options)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        self._mark(batch)
        return self.inner.infer(batch)

    def infer_images(self, images: np.ndarray) -> np.ndarray:
        self._mark(images)
        return self.inner.infer_images(images)

    def _mark(self, batch: np.ndarray) -> None:
        self.calls += 1
        if self.calls > self._warmup:
            # Sampled before each inference: from call warmup + 1 to the last call spans the same
            # frame intervals as the capture-time window that bench_e2e measures wall time with.
            self.cpu_end = _cpu_seconds()
            if self.cpu_start is None:
                self.cpu_start, self._start = self.cpu_end, time.perf_counter()
            elif self._duration_s and time.perf_counter() - self._start >= self._duration_s:
                self._stop.set()
        self.images_per_call = len(batch)

    def describe(self) -> dict[str, Any]:
        return self.inner.describe()

    def close(self) -> None:
        self.inner.close()


def paced_source(source: str, rate: float | None) -> str:
    """``source`` delivering ``rate`` frames per second, as a camera does (None or 0: unchanged).

    Only a ``gst://`` launch line can be paced here: it gets the frame rate in its caps and a
    ``clocksync``, which holds each frame until its time on the pipeline clock (``imagefreeze``
    then repeats its frame at that rate; any other launch goes through ``videorate`` first).
    A camera paces itself, and files and drives have their own options.
    """
    if not rate:
        return source
    if rate < 0:
        raise ValueError(f"--rate must be >= 0 frames per second, got {rate:g}")
    if not source.startswith("gst://"):
        raise ValueError(
            f"--rate paces gst:// sources only (the default source is one); {source!r} delivers at its "
            "own rate: drop --rate for it"
        )
    fraction = Fraction(rate).limit_denominator(1001)
    caps = f"video/x-raw,framerate={fraction.numerator}/{fraction.denominator}"
    launch = source.rstrip()
    rate_stage = "" if launch.endswith("imagefreeze") else " ! videorate"
    return f"{launch}{rate_stage} ! {caps} ! clocksync"


def bench_e2e(
    model: Path,
    backend: str,
    source: str,
    frames: int,
    warmup: int,
    threads: int = 0,
    duration_s: float | None = None,
    tiles: str = "none",
    rate: float | None = None,
    source_live: bool | None = None,
    options: dict[str, Any] | None = None,  # more DetectConfig fields: {"view": ...} costs an output
) -> BenchRun:
    """End-to-end through the real pipeline (``run_detect``); per-frame stage timings from its frame log.

    ``rate``: pace a ``gst://`` source at this many frames per second, as a camera delivers them
    (:func:`paced_source`); 0 or None runs it as fast as the pipeline takes frames (back to back).
    At a camera's rate the threads sleep between frames, which costs latency that a back-to-back
    run never shows: the figure a car gets is the paced one.

    ``tiles``: the ``--tiles`` setting of edge-detect; the run's ``batch`` is then the number of
    images per frame (whole frame + tiles), and ``fps`` stays frames per second.

    ``source_live``: edge-detect's ``--live`` (None: the source decides), e.g. to play a file paced by
    GStreamer's clock as a camera would deliver it.

    ``frames`` processed frames after ``warmup`` are measured, or, with ``duration_s``, those
    processed in that many seconds. Latency per frame is capture age (live sources) + total, the
    time from capture to the tracker's result; ordered sources have no capture age.
    """
    from stopsign.edge.cli.detect import load_backend, run_detect

    stop = threading.Event()
    wrappers: list[_MeasuredBackend] = []
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "frames.jsonl"
        config = DetectConfig(
            source=paced_source(source, rate), model=str(model), backend=backend, threads=threads,
            max_frames=0 if duration_s else warmup + frames + 1,
            log_frames=str(log), events=str(Path(tmp) / "events.jsonl"), health=False, reject_identical=False,
            tiles=tiles, live=source_live, **(options or {}),
        )  # fmt: skip
        config.validate()
        holder: dict[str, Any] = {}

        def factory(cfg: DetectConfig) -> tuple[Backend, ModelSpec]:
            inner, holder["spec"] = load_backend(cfg)
            wrappers.append(_MeasuredBackend(inner, warmup, duration_s, stop))
            return wrappers[-1], holder["spec"]

        run_detect(config, stop, backend_factory=factory)
        records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    # After warm-up, processed frame ``warmup`` opens the window and each measured frame closes
    # one interval: ``frames`` intervals between ``frames + 1`` capture times.
    processed = [r for r in records if r["rejected"] is None]
    if duration_s:
        frames = len(processed) - warmup - 1
    if frames < 2 or len(processed) < warmup + frames + 1:
        rejected = len(records) - len(processed)
        raise RuntimeError(
            f"end-to-end run processed {len(processed)} frames ({rejected} rejected by frame sanity), "
            f"need warm-up {warmup} + {max(frames, 2)} + 1: is the source long enough and not black or frozen?"
        )
    wall = (processed[warmup + frames]["monotonic_ns"] - processed[warmup]["monotonic_ns"]) / 1e9
    measured = processed[warmup + 1 : warmup + frames + 1]
    stages = {s: [r["ms"][s] for r in measured if r["ms"].get(s) is not None] for s in E2E_STAGES}
    latencies = [r["ms"]["total"] + (r["ms"].get("capture_age") or 0.0) for r in measured]
    spec: ModelSpec = holder["spec"]
    wrapper = wrappers[-1]
    cpu = (wrapper.cpu_end or 0.0) - (wrapper.cpu_start or 0.0)
    live = measured[0]["ms"].get("capture_age") is not None
    return BenchRun(
        "e2e", str(wrapper.describe().get("backend", backend)), _precision(wrapper, spec), spec.input_size[0],
        wrapper.images_per_call, frames, wall, latencies, tiles=tiles, stages_ms={s: (round(float(np.median(v)), 3) if v else None) for s, v in stages.items()},
        rss_mb=rss_mb(), cpu_s=cpu if len(wrappers) == 1 else None, device_memory_mb=_device_memory_mb(),
        model=str(model), source=source, live=live, frame_stages=[r["ms"] for r in measured], rate=rate,
        model_input="uint8" if wrapper.image_input else "float32",
        backend_options=dict((options or {}).get("backend_options") or {}),
    )  # fmt: skip
