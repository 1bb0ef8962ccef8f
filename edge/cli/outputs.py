"""``edge-detect``'s outputs: their flags, their checks before anything opens, and the sinks they make.

Every output is a module of ``stopsign.edge.sinks``; an output whose library is an extra (python-can
and cantools for ``--can``, paho-mqtt for ``--mqtt``, rosbags for ``--bag-out``; aiohttp and
foxglove-sdk for the live outputs, whose flags and sinks are in ``detect_live``) is imported only
when asked for, so the runtime needs none of them.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stopsign.edge.cli.detect_config import ConfigError, DetectConfig
from stopsign.edge.cli.detect_live import check_live, make_live_sinks
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

if TYPE_CHECKING:
    from stopsign.edge.sinks.mqtt_config import MqttSettings


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
    group.add_argument(
        "--mqtt",
        help="events (QoS 1) and health (QoS 0) to a broker: mqtts://HOST:PORT/PREFIX (mqtt:// for this "
        "machine); credentials from --mqtt-credentials or $STOPSIGN_MQTT_USERNAME/PASSWORD",
    )
    group.add_argument("--mqtt-ca", help="CA certificate (PEM) the broker's certificate must chain to")
    group.add_argument("--mqtt-cert", help="client certificate (PEM), where the broker asks for one")
    group.add_argument("--mqtt-key", help="the client certificate's private key (PEM)")
    group.add_argument("--mqtt-credentials", help="file of username=... and password=... lines (chmod 600)")
    group.add_argument(
        "--mqtt-queue",
        help="store and forward queue, SQLite (default ~/.cache/stopsign-edge/mqtt-queue.sqlite)",
    )
    group.add_argument(
        "--mqtt-queue-max",
        type=int,
        help="queue bound in records; health goes first, never events (default 10000)",
    )
    group.add_argument(
        "--bag-out",
        help="ROS 2 bag of detections (vision_msgs), Foxglove annotations and events: OUT.mcap, or a "
        "rosbag2 folder (needs the 'ros' extra; docs/ros2.md)",
    )
    group.add_argument(
        "--bag-frames",
        choices=["every", "events", "none"],
        help="input frames (JPEG) in --bag-out (default none)",
    )


def check_outputs(config: DetectConfig) -> None:
    """Output errors a user should see before anything opens: --show without a GUI, a bad --udp
    address, a bad --can interface or DBC, a bad --mqtt URL or a missing TLS or credentials file,
    a live output without its library or token."""
    if config.udp:
        try:
            parse_host_port(config.udp)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    if config.can:
        check_can(config)
    if config.mqtt:
        check_mqtt(config)
    elif any((config.mqtt_ca, config.mqtt_cert, config.mqtt_key, config.mqtt_credentials)):
        raise ConfigError("--mqtt-ca/--mqtt-cert/--mqtt-key/--mqtt-credentials need --mqtt URL")
    if config.bag_out and Path(config.bag_out).exists():
        raise ConfigError(f"--bag-out {config.bag_out}: exists already; a bag is never overwritten")
    if config.show and not gui_available():
        raise ConfigError("--show needs OpenCV with a GUI: pip install opencv-python (not -headless)")
    check_live(config)


def make_sinks(
    config: DetectConfig,
    spec: ModelSpec,
    source: Source,
    report: StatusReport | None = None,
    tracker: Any = None,
) -> list[Sink]:
    """The outputs ``config`` asks for; ``report`` reaches the CAN sink's status, ``tracker`` (the
    loop's, or None) gives the live outputs its tracks to draw."""
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
    if config.mqtt:
        from stopsign.edge.sinks.mqtt import MqttSink

        sinks.append(MqttSink(mqtt_settings(config), report=report))
    if config.bag_out:
        from stopsign.edge.sinks.bag import BagSink, BagSinkConfig  # rosbags is an extra: only when asked

        sinks.append(BagSink(BagSinkConfig(config.bag_out, config.bag_frames), names))
    sinks += make_live_sinks(config, names, tracker)
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


def mqtt_settings(config: DetectConfig) -> MqttSettings:
    """The ``--mqtt*`` flags as the MQTT sink's settings."""
    from stopsign.edge.sinks.mqtt_config import MqttSettings

    return MqttSettings(
        url=str(config.mqtt),
        ca=config.mqtt_ca,
        cert=config.mqtt_cert,
        key=config.mqtt_key,
        credentials=config.mqtt_credentials,
        queue_path=config.mqtt_queue,
        queue_max=config.mqtt_queue_max,
    )


def check_mqtt(config: DetectConfig) -> None:
    """``--mqtt`` errors before anything opens: the URL, the TLS and credentials files, paho-mqtt."""
    from stopsign.edge.sinks.mqtt_config import MqttConfigError

    try:
        mqtt_settings(config).check()
    except MqttConfigError as exc:
        raise ConfigError(str(exc)) from None
