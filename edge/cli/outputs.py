"""``edge-detect``'s outputs: their flags, their checks before anything opens, and the sinks they make.

Every output is a module of ``stopsign.edge.sinks``; an output whose library is an extra (python-can
and cantools for ``--can``) is imported only when asked for, so the runtime needs none of them.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from stopsign.edge.cli.detect_config import ConfigError, DetectConfig
from stopsign.edge.model.spec import ModelSpec
from stopsign.edge.sinks import (
    DetectionsSink,
    EventSink,
    FrameLogSink,
    ShowSink,
    Sink,
    UdpSink,
    VideoSink,
    gui_available,
    parse_host_port,
)
from stopsign.edge.sources.base import Source, StatusReport


def add_output_arguments(group: argparse._ArgumentGroup) -> None:
    """The "outputs" flags of ``edge-detect``."""
    group.add_argument("--detections", help="per-frame (or per-image) detections, JSON lines")
    group.add_argument("--events", help="events and status, JSON lines (default: stdout '-')")
    group.add_argument("--events-max-bytes", type=int, help="rotate the events file past this size")
    group.add_argument("--log-frames", help="per-frame records with stage timings, JSON lines")
    group.add_argument("--log-max-bytes", type=int, help="rotate the frame log past this size")
    group.add_argument("--save", help="annotated video (.mp4)")
    group.add_argument("--show", action="store_true", default=None, help="show annotated frames in a window")
    group.add_argument("--udp", help="send events and detections as JSON datagrams to host:port")
    group.add_argument(
        "--can",
        help="send StopSignEvent and DetectorStatus frames on INTERFACE:CHANNEL (python-can), "
        "e.g. socketcan:can0",
    )
    group.add_argument("--can-dbc", help="DBC defining the CAN frames (default: the shipped stopsign.dbc)")
    group.add_argument("--can-status-hz", type=float, help="DetectorStatus rate (default 10)")


def check_outputs(config: DetectConfig) -> None:
    """Output errors a user should see before anything opens: --show without a GUI, a bad --udp
    address, a bad --can interface or DBC."""
    if config.udp:
        try:
            parse_host_port(config.udp)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    if config.can:
        check_can(config)
    if config.show and not gui_available():
        raise ConfigError("--show needs OpenCV with a GUI: pip install opencv-python (not -headless)")


def make_sinks(
    config: DetectConfig, spec: ModelSpec, source: Source, report: StatusReport | None = None
) -> list[Sink]:
    names = spec.class_names
    sinks: list[Sink] = [EventSink(config.events, config.events_max_bytes)]
    if config.detections:
        sinks.append(DetectionsSink(config.detections, names))
    if config.log_frames:
        sinks.append(FrameLogSink(config.log_frames, config.log_max_bytes))
    if config.save:
        sinks.append(VideoSink(config.save, lambda: source.fps, names))
    if config.show:
        sinks.append(ShowSink(names))
    if config.udp:
        sinks.append(UdpSink(config.udp, names))
    if config.can:
        sinks.append(make_can_sink(config, report))
    return sinks


def make_can_sink(config: DetectConfig, report: StatusReport | None) -> Sink:
    """The ``--can`` sink; python-can and cantools are an extra, imported only when asked for."""
    from stopsign.edge.sinks.can import CanConfig, CanSink
    from stopsign.edge.sinks.can_dbc import DEFAULT_DBC

    assert config.can is not None
    dbc = Path(config.can_dbc) if config.can_dbc else DEFAULT_DBC
    return CanSink(CanConfig(config.can, dbc, config.can_status_hz), report)


def check_can(config: DetectConfig) -> None:
    """``--can`` and ``--can-dbc`` errors before anything opens: the interface, the DBC's contents."""
    try:
        from stopsign.edge.sinks.can import parse_can_target
        from stopsign.edge.sinks.can_dbc import DEFAULT_DBC, DbcError, load_dbc
    except ImportError as exc:
        raise ConfigError(
            f"--can needs python-can and cantools ({exc}): pip install 'stopsign-edge[can]'"
        ) from None
    assert config.can is not None
    try:
        parse_can_target(config.can)
        load_dbc(config.can_dbc or DEFAULT_DBC)
    except (ValueError, DbcError) as exc:
        raise ConfigError(str(exc)) from None
