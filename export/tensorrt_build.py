"""Build a TensorRT engine from an exported ONNX and write it with its ``.engine.json`` sidecar.

Written against the TensorRT Python API of TensorRT 10.x (10.3 in JetPack 6, checked statically
with tensorrt-stubs 10.13) and TensorRT 11 (strongly typed networks only, no FP16/INT8 builder
flags, no implicit calibrators). Which path runs is decided by feature detection
(``hasattr(trt.BuilderFlag, "FP16")``), not by parsing the version string; the decisions live in
:mod:`stopsign.export.engine_plan`. ``tensorrt`` is imported inside the functions only:
``stopsign.export`` imports on machines without it, and ``stopsign.edge`` never imports this module.
"""

from __future__ import annotations

import datetime
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stopsign.edge.model.artifacts import atomic_write_bytes, sha256_bytes, sha256_file
from stopsign.edge.model.engine_sidecar import EngineSidecar, engine_staleness, read_sidecar, write_sidecar
from stopsign.edge.model.gpu_info import gpu_info
from stopsign.export.engine_plan import (
    BuildPlan,
    EngineBuildError,
    OnnxTraits,
    format_precision_summary,
    inspect_onnx,
    plan_build,
    summarize_layer_precisions,
)

if TYPE_CHECKING:
    import tensorrt as trt

INPUT_NAME = "images"


class TensorRTUnavailable(ImportError):
    """The ``tensorrt`` package is absent, or only its type stubs are installed."""


def tensorrt_version() -> str:
    """``tensorrt.__version__``; TensorRTUnavailable when TensorRT cannot be used here.

    tensorrt-stubs installs a ``tensorrt/`` folder holding only ``.pyi`` files, which Python imports
    as an empty namespace package: "import tensorrt" succeeding proves nothing, so check for Builder.
    """
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise TensorRTUnavailable(f"tensorrt is not installed ({exc})") from None
    if not hasattr(trt, "Builder"):
        raise TensorRTUnavailable("tensorrt imports but has no Builder (only tensorrt-stubs is installed?)")
    return str(trt.__version__)


@dataclass(frozen=True)
class EngineBuildOptions:
    """Build settings.

    Attributes:
        precision: "fp32", "fp16" or "int8".
        workspace_mb: builder workspace memory pool limit in MiB.
        timing_cache: file to read tactic timings from and write them back to (speeds up rebuilds).
        calibrator: a ``tensorrt.IInt8Calibrator`` (TensorRT 10 implicit INT8; from the calibration stage).
        min_batch, opt_batch, max_batch: optimisation profile for a dynamic-batch ONNX.
    """

    precision: str = "fp16"
    workspace_mb: int = 1024
    timing_cache: Path | None = None
    calibrator: Any = None
    min_batch: int = 1
    opt_batch: int = 1
    max_batch: int = 8

    def flags_record(self, plan: BuildPlan) -> dict[str, Any]:
        """What the sidecar records as ``build_flags`` (and ``--if-stale`` reuses)."""
        return {
            "strongly_typed": plan.strongly_typed,
            "builder_flags": list(plan.builder_flags),
            "calibrator": type(self.calibrator).__name__ if self.calibrator is not None else None,
            "workspace_mb": self.workspace_mb,
            "timing_cache": str(self.timing_cache) if self.timing_cache else None,
            "batch_profile": [self.min_batch, self.opt_batch, self.max_batch],
            "notes": list(plan.notes),
        }


def build_engine(onnx_path: str | Path, out: str | Path, options: EngineBuildOptions) -> EngineSidecar:
    """Build ``out`` from ``onnx_path``; writes the engine, then its sidecar, each atomically.

    The engine is written before the sidecar: a power cut in between leaves a sidecar whose
    engine_sha256 does not match, which the loader refuses (and ``--if-stale`` rebuilds).
    """
    version = tensorrt_version()  # first: a clear TensorRTUnavailable where TensorRT is absent
    import tensorrt as trt

    onnx_path, out = Path(onnx_path), Path(out)
    traits = inspect_onnx(onnx_path)
    plan = plan_build(
        options.precision, hasattr(trt.BuilderFlag, "FP16"), traits, options.calibrator is not None
    )
    logger = trt.Logger(trt.Logger.WARNING)
    trt.init_libnvinfer_plugins(logger, "")  # registers EfficientNMS_TRT for --nms models
    builder = trt.Builder(logger)
    network = builder.create_network(_network_flags(plan))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineBuildError(f"{onnx_path}: TensorRT's ONNX parser failed: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_mb << 20)
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED  # layer names/precisions for the summary
    for name in plan.builder_flags:
        config.set_flag(getattr(trt.BuilderFlag, name))
    if plan.use_calibrator:
        config.int8_calibrator = options.calibrator
    if traits.dynamic_batch:
        config.add_optimization_profile(_batch_profile(builder, traits, options))
    cache = _load_timing_cache(config, options.timing_cache)
    started = time.monotonic()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineBuildError(f"{onnx_path}: TensorRT failed to build the engine (see the log above)")
    build_time = time.monotonic() - started
    engine_bytes = bytes(memoryview(serialized))
    if options.timing_cache is not None and cache is not None:
        atomic_write_bytes(options.timing_cache, bytes(memoryview(config.get_timing_cache().serialize())))
    atomic_write_bytes(out, engine_bytes)
    gpu = gpu_info()
    onnx_sha = sha256_file(onnx_path)
    sidecar = EngineSidecar(
        model_spec=traits.spec.replace(precision=options.precision, onnx_sha256=onnx_sha),
        engine_sha256=sha256_bytes(engine_bytes),
        onnx_path=str(onnx_path.resolve()),
        onnx_sha256=onnx_sha,
        tensorrt_version=version,
        gpu_name=gpu.name,
        compute_capability=gpu.compute_capability,
        precision=options.precision,
        build_flags=options.flags_record(plan),
        build_time_s=round(build_time, 2),
        built_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    )
    write_sidecar(out, sidecar)
    print(f"{out}: {format_precision_summary(layer_precision_summary(engine_bytes, logger))}")
    return sidecar


def build_if_stale(
    out: str | Path, options: EngineBuildOptions | None = None, onnx_path: str | Path | None = None
) -> EngineSidecar | None:
    """Rebuild ``out`` when it is stale for this TensorRT/GPU or its ONNX changed; None when current.

    The ONNX and build settings default to those recorded in the existing sidecar.
    """
    version = tensorrt_version()
    why = engine_staleness(
        out, version, gpu_info().compute_capability, onnx_path, options.precision if options else None
    )
    if why is None:
        print(f"{out}: current for TensorRT {version}; nothing to do")
        return None
    previous = _previous_build(out)
    source = Path(onnx_path) if onnx_path is not None else (Path(previous["onnx_path"]) if previous else None)
    if source is None:
        raise EngineBuildError(f"{out}: no sidecar to take the ONNX from; name the ONNX to build from")
    print(f"{out}: rebuilding ({why})")
    return build_engine(source, out, options or _options_from_previous(previous))


def layer_precision_summary(engine_bytes: bytes, logger: trt.ILogger) -> Any:
    """Per-precision layer counts of a serialized engine, from TensorRT's engine inspector."""
    import tensorrt as trt

    runtime = trt.Runtime(logger)
    engine = runtime.deserialize_cuda_engine(engine_bytes)
    if engine is None:
        raise EngineBuildError("TensorRT could not deserialize the engine it just built")
    inspector = engine.create_engine_inspector()
    info = json.loads(inspector.get_engine_information(trt.LayerInformationFormat.JSON))
    return summarize_layer_precisions(info)


def _network_flags(plan: BuildPlan) -> int:
    import tensorrt as trt

    flags = 0
    creation = trt.NetworkDefinitionCreationFlag
    # TensorRT 11 may make strong typing the only mode and drop the flag; set it where it exists.
    if plan.strongly_typed and hasattr(creation, "STRONGLY_TYPED"):
        flags |= 1 << int(creation.STRONGLY_TYPED)
    return flags


def _batch_profile(
    builder: trt.Builder, traits: OnnxTraits, options: EngineBuildOptions
) -> trt.IOptimizationProfile:
    import tensorrt as trt

    if not (1 <= options.min_batch <= options.opt_batch <= options.max_batch):
        raise EngineBuildError(
            f"batch profile needs 1 <= min <= opt <= max, got {options.min_batch}, {options.opt_batch}, {options.max_batch}"
        )
    _, channels, height, width = traits.input_shape
    profile = builder.create_optimization_profile()
    profile.set_shape(
        traits.input_name,
        trt.Dims([options.min_batch, channels, height, width]),
        trt.Dims([options.opt_batch, channels, height, width]),
        trt.Dims([options.max_batch, channels, height, width]),
    )
    return profile


def _load_timing_cache(config: trt.IBuilderConfig, path: Path | None) -> trt.ITimingCache | None:
    if path is None:
        return None
    data = Path(path).read_bytes() if Path(path).is_file() else b""
    cache = config.create_timing_cache(data)
    # ignore_mismatch=False: a cache from another GPU or TensorRT is rejected, not silently used.
    if not config.set_timing_cache(cache, False):
        raise EngineBuildError(f"{path}: timing cache was made on another device or TensorRT; delete it")
    return cache


def _previous_build(out: str | Path) -> dict[str, Any] | None:
    try:
        sidecar = read_sidecar(out)
    except Exception:  # missing or malformed sidecar: nothing to reuse, the caller reports it
        return None
    return {"onnx_path": sidecar.onnx_path, "precision": sidecar.precision, "flags": sidecar.build_flags}


def _options_from_previous(previous: dict[str, Any] | None) -> EngineBuildOptions:
    if previous is None:
        return EngineBuildOptions()
    flags = previous["flags"]
    if flags.get("calibrator"):
        raise EngineBuildError("the engine was calibrated with a calibrator object; rebuild with --calib DIR")
    profile = flags.get("batch_profile", [1, 1, 8])
    cache = flags.get("timing_cache")
    return EngineBuildOptions(
        precision=previous["precision"],
        workspace_mb=int(flags.get("workspace_mb", 1024)),
        timing_cache=Path(cache) if cache else None,
        min_batch=int(profile[0]),
        opt_batch=int(profile[1]),
        max_batch=int(profile[2]),
    )
