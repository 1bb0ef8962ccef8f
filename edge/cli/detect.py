"""``edge-detect``: camera or video -> detections, events and status on the vehicle.

    edge-detect --camera /dev/video0
    edge-detect --source file://drive.mp4 --save annotated.mp4 --detections dets.jsonl
    edge-detect --source test:// --max-frames 100 --events events.jsonl

Exit codes: 0 at end of stream, --max-frames or SIGINT/SIGTERM; 1 on a fatal error (source
cannot open, model cannot load, backend keeps failing); 2 on bad arguments or config.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from stopsign.edge.backends.base import Backend, BackendError, BackendOptions, parse_property, resolve_model
from stopsign.edge.cli.detect_config import ConfigError, DetectConfig, build_config, load_yaml_config
from stopsign.edge.cli.detect_live import add_live_arguments
from stopsign.edge.cli.outputs import add_output_arguments, check_outputs, make_sinks
from stopsign.edge.model.spec import ModelSpec, ModelSpecError
from stopsign.edge.runtime.events import EventChannel
from stopsign.edge.runtime.inference import BackendSupervisor, FatalBackendError
from stopsign.edge.runtime.loop import DetectionLoop, LoopConfig, TrackerLike
from stopsign.edge.runtime.sdnotify import SdNotifier
from stopsign.edge.sinks import GuardedSink
from stopsign.edge.sources.base import Source, SourceError, SourceOptions, StatusReport
from stopsign.edge.sources.factory import make_source
from stopsign.edge.sources.launch import HARDWARE_DECODERS, CameraOptions
from stopsign.edge.sources.sanity import SanityOptions
from stopsign.edge.sources.uri import SourceURIError, parse_size, parse_source_uri
from stopsign.edge.tracking import CameraIntrinsics, SpeedInput, Tracker, TrackerConfig
from stopsign.edge.vision.tiles import TileConfig

log = logging.getLogger("edge-detect")

SHIPPED_MODEL = Path(__file__).resolve().parents[1] / "assets" / "stopsign.onnx"

# A backend factory: builds and loads a backend, returns it with the model's spec.
BackendFactory = Callable[[DetectConfig], tuple[Backend, ModelSpec]]
SourceFactory = Callable[[str, SourceOptions, StatusReport], Source]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="edge-detect", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    src = p.add_argument_group("input")
    src.add_argument(
        "--source",
        help="URI: /dev/videoN, file://x.mp4, drive://dir, rtsp://, test://, gst://..., or an image folder",
    )
    src.add_argument("--camera", help="live device, same as --source: /dev/videoN, N or csi://N")
    src.add_argument("--camera-size", help="requested camera mode, e.g. 1280x720")
    src.add_argument("--camera-fps", type=int)
    src.add_argument(
        "--live",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="force newest-frame (live) or every-frame delivery",
    )
    src.add_argument(
        "--stall-timeout",
        type=float,
        help="seconds without a frame before the source is rebuilt (default 0.5)",
    )
    src.add_argument("--open-timeout", type=float, help="seconds the first frame may take (default 5)")
    src.add_argument(
        "--reject-identical",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="reject frames identical to the previous one (default on)",
    )
    mod = p.add_argument_group("model")
    mod.add_argument("--model", help=f"model file (default: {SHIPPED_MODEL})")
    mod.add_argument("--backend", choices=["auto", "onnxruntime", "openvino", "tensorrt", "torch"])
    mod.add_argument(
        "--device",
        choices=["auto", "cpu", "cuda", "tensorrt", "gpu"],
        help="ONNX Runtime execution provider (cpu, cuda, tensorrt), or gpu: an Intel GPU through OpenVINO",
    )
    mod.add_argument(
        "--allow-fallback",
        action="store_true",
        default=None,
        help="accept a backend running on another device than asked (reported)",
    )
    mod.add_argument("--threads", type=int, help="intra-op CPU threads (0: one per core)")
    mod.add_argument(
        "--backend-option",
        action="append",
        metavar="KEY=VALUE",
        help="a backend-specific setting, repeatable: an OpenVINO property (ENABLE_CPU_PINNING=NO) or an "
        "ONNX Runtime session config entry (session.intra_op.allow_spinning=1); YAML: backend_options",
    )
    mod.add_argument(
        "--cache-dir",
        help="compiled-model cache of the openvino backend (default ~/.cache/stopsign-edge/openvino)",
    )
    mod.add_argument("--conf", type=float, help="confidence floor of reported detections (default 0.25)")
    mod.add_argument("--iou", type=float, help="NMS IoU (default: the model's)")
    mod.add_argument("--img", type=int, help="expected network input size; must match the model")
    mod.add_argument(
        "--tiles",
        help="high-resolution tiles batched with the whole frame, for far signs: none (default), auto "
        "(video: a band on the horizon; image folders: an overlapping grid) or x,y,w,h[;x,y,w,h] "
        "in pixels or fractions of the frame",
    )
    run = p.add_argument_group("run")
    run.add_argument("--budget-ms", type=float, help="latency budget, capture to result (default 100)")
    run.add_argument("--max-frames", type=int, help="stop after this many frames (0: no limit)")
    run.add_argument(
        "--max-backend-failures", type=int, help="consecutive failures before the backend is re-initialised"
    )
    run.add_argument(
        "--no-health", dest="health", action="store_false", default=None, help="no health line on stderr"
    )
    trk = p.add_argument_group("smoothing (events)")
    trk.add_argument("--confirm", help="confirm a sign after M hits in the last N frames (default 3/4)")
    trk.add_argument("--max-age", type=float, help="seconds a track coasts without a hit (default 0.5)")
    trk.add_argument(
        "--hold-gap",
        type=float,
        help="seconds of camera outage over which tracks are held, not ended (default 5; 0: end them)",
    )
    trk.add_argument(
        "--enter-threshold",
        type=float,
        help="score that starts a track or counts towards confirmation (default 0.8 x the model's operating)",
    )
    trk.add_argument(
        "--stay-threshold", type=float, help="score that keeps a confirmed track (default 0.6 x enter)"
    )
    trk.add_argument("--focal-px", type=float, help="camera focal length in pixels (drives: from meta.json)")
    trk.add_argument("--sign-size-m", type=float, help="real sign height for distance (default 0.75)")
    trk.add_argument("--speed-kmh", type=float, help="vehicle speed for time-to-sign (default: none)")

    out = p.add_argument_group("outputs")
    add_output_arguments(out)
    add_live_arguments(p)
    p.add_argument("--config", help="YAML file of settings (flags override it)")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def resolve_config(argv: Sequence[str] | None) -> tuple[DetectConfig, bool]:
    args = build_parser().parse_args(argv)
    flags = {k: v for k, v in vars(args).items() if k not in ("config", "verbose", "backend_option")}
    file_values = load_yaml_config(args.config) if args.config else {}
    if args.backend_option:
        try:
            given = dict(parse_property(text) for text in args.backend_option)
        except ValueError as exc:
            raise ConfigError(f"--backend-option: {exc}") from None
        from_file = file_values.get("backend_options") or {}
        flags["backend_options"] = {**from_file, **given} if isinstance(from_file, dict) else given
    return build_config(file_values, flags, source=args.config or "command line"), args.verbose


def model_path(config: DetectConfig) -> Path:
    if config.model:
        return Path(config.model)
    if SHIPPED_MODEL.is_file():
        return SHIPPED_MODEL
    raise BackendError(
        f"no --model given and no shipped model at {SHIPPED_MODEL} yet; train and export one "
        "(`edge-train ...` then `edge-export onnx ...`) and pass --model model.onnx"
    )


def load_backend(config: DetectConfig) -> tuple[Backend, ModelSpec]:
    """The default backend factory: resolve, build and load the configured backend."""
    cls, path = resolve_model(config.backend, model_path(config))
    backend = cls()
    options = BackendOptions(
        config.device,
        config.allow_fallback,
        config.threads,
        config.cache_dir,
        tuple(config.backend_options.items()),
    )
    spec = backend.load(path, None, options)
    if config.img is not None and (config.img, config.img) != tuple(spec.input_size):
        raise BackendError(f"--img {config.img} does not match {path}'s input size {list(spec.input_size)}")
    return backend, spec


def principal_point(config: DetectConfig) -> tuple[float, float] | None:
    """The camera's (cx, cy) from a drive's meta.json, for ``--tiles auto``; None when unknown."""
    intrinsics = drive_intrinsics(config.uri)
    if intrinsics is None or intrinsics.cx is None or intrinsics.cy is None:
        return None
    return float(intrinsics.cx), float(intrinsics.cy)


def drive_intrinsics(uri: str) -> CameraIntrinsics | None:
    """The camera intrinsics recorded in a drive's meta.json (``drive://DIR``) or a bag's CameraInfo
    topic, else None."""
    parsed = parse_source_uri(uri)
    if parsed.kind == "bag":
        from stopsign.edge.sources.bag import BagOptions, bag_camera_meta

        meta = bag_camera_meta(parsed.target, BagOptions.from_query(parsed.options))
        return CameraIntrinsics.from_meta(meta) if meta is not None else None
    if not uri.startswith("drive://"):
        return None
    meta = Path(uri[len("drive://") :]) / "meta.json"
    try:
        return CameraIntrinsics.from_meta(json.loads(meta.read_text()))
    except (OSError, ValueError):
        return None  # the drive source itself reports a missing or broken meta.json


def make_tracker(spec: ModelSpec, config: DetectConfig, still_images: bool) -> TrackerLike | None:
    """The temporal tracker, entering at 0.8 x the model's operating threshold unless told (None for stills)."""
    if still_images:
        return None
    hits, _, window = config.confirm.partition("/")
    changes: dict[str, object] = {
        "confirm_hits": int(hits),
        "confirm_window": int(window),
        "max_age_s": config.max_age,
        "hold_gap_s": config.hold_gap,
        "focal_px": config.focal_px,
        "intrinsics": drive_intrinsics(config.uri),
        "sign_size_m": config.sign_size_m,
    }
    if config.enter_threshold is not None:
        changes["enter_threshold"] = config.enter_threshold
    tracker_config = TrackerConfig.from_spec(spec, **changes)
    if config.stay_threshold is not None:  # never above the enter threshold, whichever set it
        stay = min(config.stay_threshold, tracker_config.enter_threshold)
        tracker_config = tracker_config.replace(stay_threshold=stay)
    speed = SpeedInput.fixed_kmh(config.speed_kmh) if config.speed_kmh is not None else None
    print(f"edge-detect {tracker_config.describe()}", file=sys.stderr)
    return Tracker(tracker_config, speed=speed)


def decoder_choice(source: Source) -> str | None:
    """What decodes the video: "<element> (hardware: <platform>)" or "<element> (software)";
    None for sources that decode nothing (raw cameras, test patterns, image folders)."""
    decoder = getattr(source, "decoder", None)
    if decoder is None:
        return None
    platform = dict(HARDWARE_DECODERS).get(decoder)
    return f"{decoder} (hardware: {platform})" if platform else f"{decoder} (software)"


def preflight(config: DetectConfig) -> None:
    """Errors a user should see before anything opens (bad URI, --show without GUI, bad --udp or --can)."""
    parse_source_uri(config.uri)
    check_outputs(config)


def run_detect(
    config: DetectConfig,
    stop: threading.Event,
    backend_factory: BackendFactory = load_backend,
    health_stream: Any = None,
    source_factory: SourceFactory = make_source,
) -> int:
    """Run the whole pipeline for ``config``; returns the exit code. ``backend_factory`` and
    ``source_factory`` let a caller supply another backend (the benchmark's, a fault-injecting
    one) or source (the soak's endless replay of a recorded drive)."""
    preflight(config)
    backend, spec = backend_factory(config)
    channel = EventChannel()
    camera = CameraOptions(parse_size(config.camera_size) if config.camera_size else None, config.camera_fps)
    options = SourceOptions(camera, config.live, config.stall_timeout, config.open_timeout)
    source = source_factory(config.uri, options, channel.emit)
    guarded: list[GuardedSink] = []
    try:
        source.open()
        still = source.description.startswith("images")
        tracker = make_tracker(spec, config, still)
        sinks = make_sinks(config, spec, source, channel.emit, tracker)
        guarded = [GuardedSink(s, channel.emit) for s in sinks]
        channel.receivers.extend(guarded)
        for sink in guarded:
            sink.open()
        supervisor = BackendSupervisor(
            backend, lambda: backend_factory(config)[0], config.max_backend_failures, channel
        )
        loop_config = LoopConfig(
            conf=config.conf,
            iou=config.iou,
            budget_ms=config.budget_ms,
            max_frames=config.max_frames,
            health_stream=health_stream if config.health else None,
            max_consecutive_failures=config.max_backend_failures,
            sanity=SanityOptions(check_identical=config.reject_identical),
            tiles=TileConfig.parse(config.tiles),
            principal_point=principal_point(config),
        )
        if health_stream is not None and config.health:
            decoder = decoder_choice(source)
            print(
                f"edge-detect source: {source.description}"
                + (f"; video decoder {decoder}" if decoder else ""),
                file=health_stream,
                flush=True,
            )
        channel.emit(
            "started",
            {
                "source": config.uri,
                "source_mode": source.description,
                "source_decoder": decoder_choice(source),
                **supervisor.backend.describe(),
            },
        )
        loop = DetectionLoop(
            source,
            supervisor,
            spec,
            loop_config,
            channel,
            guarded,
            tracker=tracker,
            notifier=SdNotifier.from_env(os.environ),
            stop=stop,
        )
        try:
            summary = loop.run()
        except FatalBackendError as exc:
            channel.emit("stopped", {"reason": "backend", "error": str(exc)})
            raise
        channel.emit("stopped", {"reason": summary.stopped_by, **vars(summary)})
        supervisor.backend.close()
        return 0
    finally:
        for sink in guarded:
            sink.close()
        source.close()


def main(argv: Sequence[str] | None = None) -> int:
    try:
        config, verbose = resolve_config(argv)
    except ConfigError as exc:
        print(f"edge-detect: error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    print("edge-detect effective config: " + json.dumps(config.to_dict(), sort_keys=True), file=sys.stderr)
    stop = threading.Event()
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def on_signal(signum: int, _frame: Any) -> None:
        stop.set()

    for sig in previous:
        signal.signal(sig, on_signal)
    try:
        return run_detect(config, stop, health_stream=sys.stderr)
    except (ConfigError, SourceURIError) as exc:
        print(f"edge-detect: error: {exc}", file=sys.stderr)
        return 2
    except (SourceError, BackendError, ModelSpecError, FatalBackendError) as exc:
        print(f"edge-detect: error: {exc}", file=sys.stderr)
        return 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


if __name__ == "__main__":
    sys.exit(main())
