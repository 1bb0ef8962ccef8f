"""``edge-detect`` configuration: a dataclass, filled from YAML (``--config``) then CLI flags."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from stopsign.edge.backends.base import DEVICES
from stopsign.edge.sinks.live import ListenAddressError, is_loopback, parse_listen_address
from stopsign.edge.sources.uri import parse_size
from stopsign.edge.vision.tiles import TileConfig, TileConfigError


class ConfigError(ValueError):
    """A config file or flag value is invalid; the message names the key and the value."""


@dataclass
class DetectConfig:
    """Everything ``edge-detect`` can be told (flag ``--x-y`` = YAML key ``x_y``)."""

    source: str | None = None
    camera: str | None = None
    model: str | None = None
    backend: str = "auto"
    device: str = "auto"
    allow_fallback: bool = False
    threads: int = 0
    cache_dir: str | None = None
    # Backend-specific settings passed through (BackendOptions.properties): --backend-option K=V.
    backend_options: dict[str, str] = dataclasses.field(default_factory=dict)
    conf: float = 0.25
    iou: float | None = None
    img: int | None = None
    # High-resolution tiles batched with the whole frame: none | auto | x,y,w,h[;...] (stopsign.edge.vision.tiles)
    tiles: str = "none"
    budget_ms: float = 100.0
    max_frames: int = 0
    live: bool | None = None
    stall_timeout: float = 0.5
    open_timeout: float = 5.0
    camera_size: str | None = None
    camera_fps: int | None = None
    detections: str | None = None
    events: str = "-"
    log_frames: str | None = None
    log_max_bytes: int = 50_000_000
    events_max_bytes: int = 50_000_000
    save: str | None = None
    show: bool = False
    udp: str | None = None
    # MQTT (stopsign.edge.sinks.mqtt): URL, TLS files, credentials file (never the password itself)
    # and the store and forward queue; checked by edge-detect's preflight.
    mqtt: str | None = None
    mqtt_ca: str | None = None
    mqtt_cert: str | None = None
    mqtt_key: str | None = None
    mqtt_credentials: str | None = None
    mqtt_queue: str = "~/.cache/stopsign-edge/mqtt-queue.sqlite"
    mqtt_queue_max: int = 10_000
    # CAN (stopsign.edge.sinks.can): INTERFACE:CHANNEL, the DBC (None: the shipped one), status rate.
    can: str | None = None
    can_dbc: str | None = None
    can_status_hz: float = 10.0
    # A ROS 2 bag of detections, annotations, events (and frames: every | events | none).
    bag_out: str | None = None
    bag_frames: str = "none"
    # Live outputs (stopsign.edge.sinks.view / .foxglove): [HOST:]PORT, loopback unless told;
    # any other address needs the token (the view) or is refused (Foxglove has no authentication).
    view: str | None = None
    view_fps: float = 10.0
    view_width: int = 640
    view_token_file: str | None = None
    foxglove: str | None = None
    foxglove_fps: float = 10.0
    health: bool = True
    max_backend_failures: int = 3
    reject_identical: bool = True
    # Temporal smoothing (stopsign.edge.tracking): enter at 0.8 x the model's operating threshold,
    # stay at 0.6 x enter, unless given.
    confirm: str = "3/4"
    max_age: float = 0.5
    # A camera outage up to this long keeps the tracks (no second announcement of the same sign).
    hold_gap: float = 5.0
    enter_threshold: float | None = None
    stay_threshold: float | None = None
    focal_px: float | None = None
    sign_size_m: float = 0.75
    speed_kmh: float | None = None

    def validate(self) -> None:
        def fail(key: str, why: str) -> None:
            raise ConfigError(f"{key}={getattr(self, key)!r}: {why}")

        if self.source and self.camera:
            fail("camera", "give either --source or --camera, not both")
        if not (self.source or self.camera):
            raise ConfigError("no input: give --source URI or --camera DEVICE")
        if self.camera and not (
            self.camera.startswith(("/dev/video", "v4l2://", "csi://")) or self.camera.isdigit()
        ):
            fail(
                "camera",
                "--camera takes a live device (/dev/videoN, N, v4l2://..., csi://N); use --source otherwise",
            )
        if self.backend not in ("auto", "onnxruntime", "openvino", "tensorrt", "torch"):
            fail("backend", "must be auto, onnxruntime, openvino, tensorrt or torch")
        if self.device not in DEVICES:
            fail("device", f"must be one of {', '.join(DEVICES)}")
        for key in ("conf",):
            if not 0.0 <= getattr(self, key) <= 1.0:
                fail(key, "must be in [0, 1]")
        if self.iou is not None and not 0.0 <= self.iou <= 1.0:
            fail("iou", "must be in [0, 1]")
        positive = ("budget_ms", "stall_timeout", "open_timeout", "max_backend_failures", "can_status_hz")
        for key in positive:
            value = getattr(self, key)
            if not (math.isfinite(value) and value > 0):
                fail(key, "must be > 0")
        if self.mqtt_queue_max < 1:
            fail("mqtt_queue_max", "must be >= 1")
        if not isinstance(self.backend_options, dict):
            fail("backend_options", "must be a mapping of KEY: VALUE")
        for key, value in self.backend_options.items():
            if (
                not isinstance(key, str)
                or isinstance(value, bool)
                or not isinstance(value, (str, int, float))
            ):
                fail("backend_options", f"{key!r}: {value!r} must be a name and a text or number value")
        self.backend_options = {key: str(value) for key, value in self.backend_options.items()}
        for key in ("threads", "max_frames", "log_max_bytes", "events_max_bytes"):
            if getattr(self, key) < 0:
                fail(key, "must be >= 0")
        if self.can_dbc and not self.can:
            fail("can_dbc", "needs --can INTERFACE:CHANNEL to send on")
        if self.can_status_hz > 100:
            fail("can_status_hz", "must be at most 100 (a status frame every 10 ms)")
        hits, sep, window = self.confirm.partition("/")
        if not (sep and hits.isdigit() and window.isdigit() and 1 <= int(hits) <= int(window)):
            fail("confirm", "must be M/N with 1 <= M <= N, e.g. 3/4")
        for key in ("max_age", "sign_size_m"):
            if not getattr(self, key) > 0:
                fail(key, "must be > 0")
        if not self.hold_gap >= 0:
            fail("hold_gap", "must be >= 0")
        if self.focal_px is not None and not self.focal_px > 0:
            fail("focal_px", "must be > 0")
        if self.speed_kmh is not None and self.speed_kmh < 0:
            fail("speed_kmh", "must be >= 0")
        if self.stay_threshold is not None and not 0.0 <= self.stay_threshold <= 1.0:
            fail("stay_threshold", "must be in [0, 1]")
        if self.enter_threshold is not None and not 0.0 < self.enter_threshold <= 1.0:
            fail("enter_threshold", "must be in (0, 1]")
        enter, stay = self.enter_threshold, self.stay_threshold
        if enter is not None and stay is not None and stay > enter:
            fail("stay_threshold", f"must not exceed enter_threshold {self.enter_threshold}")
        if self.bag_frames not in ("every", "events", "none"):
            fail("bag_frames", "must be every, events or none")
        if self.bag_frames != "none" and not self.bag_out:
            fail("bag_frames", "needs --bag-out")
        if self.img is not None and self.img <= 0:
            fail("img", "must be > 0")
        try:
            TileConfig.parse(self.tiles)
        except TileConfigError as exc:
            raise ConfigError(str(exc)) from None
        self._validate_live()
        if self.camera_fps is not None and self.camera_fps <= 0:
            fail("camera_fps", "must be > 0")
        if self.camera_size is not None:
            try:
                parse_size(self.camera_size, "camera_size")
            except ValueError as exc:
                raise ConfigError(str(exc)) from None

    def _validate_live(self) -> None:
        for key in ("view_fps", "foxglove_fps"):
            value = getattr(self, key)
            if not (math.isfinite(value) and 0 < value <= 60):
                raise ConfigError(f"{key}={value!r}: must be in (0, 60] frames per second")
        if self.view_width != 0 and not 160 <= self.view_width <= 7680:
            raise ConfigError(f"view_width={self.view_width!r}: must be 0 (full size) or 160-7680 px")
        if self.view is not None:
            host, _ = self._listen("view")
            if self.view_token_file is None and not is_loopback(host):
                raise ConfigError(
                    f"view={self.view!r}: {host} can be reached from other machines; give "
                    "view_token_file (--view-token-file), or keep 127.0.0.1 and use an SSH tunnel"
                )
        elif self.view_token_file is not None:
            raise ConfigError(f"view_token_file={self.view_token_file!r}: given without --view")
        if self.foxglove is not None:
            host, _ = self._listen("foxglove")
            if not is_loopback(host):
                raise ConfigError(
                    f"foxglove={self.foxglove!r}: the Foxglove WebSocket protocol has no authentication, "
                    "so it binds loopback only (127.0.0.1 or ::1); reach it through an SSH tunnel"
                )

    def _listen(self, key: str) -> tuple[str, int]:
        try:
            return parse_listen_address(str(getattr(self, key)), f"--{key}")
        except ListenAddressError as exc:
            raise ConfigError(str(exc)) from None

    @property
    def uri(self) -> str:
        return str(self.camera or self.source)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


FIELDS = {f.name: f for f in dataclasses.fields(DetectConfig)}


def load_yaml_config(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping of DetectConfig keys (dashes or underscores); unknown keys are errors."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings, got {type(data).__name__}")
    out: dict[str, Any] = {}
    for raw_key, value in data.items():
        key = str(raw_key).replace("-", "_")
        if key not in FIELDS:
            raise ConfigError(f"{path}: unknown key {raw_key!r}; known: {sorted(FIELDS)}")
        out[key] = value
    return out


def build_config(
    file_values: dict[str, Any], flag_values: dict[str, Any], source: str = "config"
) -> DetectConfig:
    """Defaults <- file values <- flags given on the command line (None = not given)."""
    merged = dict(file_values)
    merged.update({k: v for k, v in flag_values.items() if v is not None})
    try:
        config = DetectConfig(**merged)
    except TypeError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    for key, value in merged.items():
        expected = FIELDS[key].type
        if isinstance(value, bool) and "bool" not in str(expected):
            raise ConfigError(f"{source}: {key}={value!r} is a boolean, expected {expected}")
        if "float" in str(expected) and isinstance(value, int) and not isinstance(value, bool):
            setattr(config, key, float(value))
        elif value is not None and not _matches(value, str(expected)):
            raise ConfigError(f"{source}: {key}={value!r} should be {expected}")
    config.validate()
    return config


def _matches(value: Any, expected: str) -> bool:
    if expected.startswith("dict"):
        return isinstance(value, dict)
    kinds = {"str": str, "int": int, "float": float, "bool": bool}
    return any(isinstance(value, t) for name, t in kinds.items() if name in expected)
