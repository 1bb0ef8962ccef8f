"""``ModelSpec``: everything the runtime must know about a model, stored with every model artifact.

It travels as ONNX ``metadata_props`` (key ``stopsign.model_spec``), as the ``<name>.engine.json``
sidecar beside a TensorRT engine, and as ``spec.json`` inside a training checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stopsign.edge.model.artifacts import atomic_write_text

SPEC_VERSION = 1
ONNX_METADATA_KEY = "stopsign.model_spec"

# YOLOv5's default anchors in input pixels, one row per output level (P3/8, P4/16, P5/32).
DEFAULT_ANCHORS: tuple[tuple[float, ...], ...] = (
    (10, 13, 16, 30, 33, 23),
    (30, 61, 62, 45, 59, 119),
    (116, 90, 156, 198, 373, 326),
)

OUTPUT_LAYOUTS = ("yolov5_raw", "efficient_nms")
PRECISIONS = ("fp32", "fp16", "int8")
COLOR_ORDERS = ("RGB", "BGR")
# How a frame becomes the network input: "letterbox" keeps the aspect ratio and pads (YOLOv5);
# "stretch" resizes to the input size ignoring it (Darknet, unless its cfg says letter_box=1).
# (stopsign.edge.vision.letterbox implements both.)
RESIZE_MODES = ("letterbox", "stretch")


class ModelSpecError(ValueError):
    """A ModelSpec (or the JSON it came from) is malformed; the message names the field."""


@dataclass
class ModelSpec:
    """What a model expects as input and produces as output.

    Attributes:
        class_names: names indexed by class id, e.g. ``["stop_sign"]``.
        input_size: (height, width) of the network input in pixels, multiples of the largest stride.
        color_order: channel order the network expects ("RGB" for YOLOv5).
        scale: multiplier from uint8 pixel values to network input (1/255).
        pad_value: letterbox border value (114 for YOLOv5).
        resize: "letterbox" (aspect kept, border of ``pad_value``) or "stretch" (each axis scaled
            to the input size, no border: Darknet's default). Specs written before the field
            existed read as "letterbox".
        strides: output strides in pixels, one per detection level.
        anchors: per level, anchor (w, h) pairs flattened, in input pixels.
        output_layout: "yolov5_raw" = (batch, n_anchors_total, 5 + nc): cx, cy, w, h in input
            pixels, objectness and per-class probabilities (already sigmoid); "efficient_nms" =
            TensorRT EfficientNMS_TRT outputs (num_dets, det_boxes, det_scores, det_classes).
        precision: numeric precision of the artifact ("fp32", "fp16", "int8").
        operating_threshold: the confidence at which the car acts, chosen on validation data.
        nms_iou: IoU threshold of non-maximum suppression.
        weights_sha256: SHA-256 of the checkpoint weights this model was made from.
        onnx_sha256: SHA-256 of the ONNX file an engine was built from (engines only).
        architecture: name of the model YAML (e.g. "yolov5n").
        training_data: free-form summary of the data it was trained on.
        metrics: validation metrics (e.g. {"map50": 0.93}).
    """

    class_names: list[str]
    input_size: tuple[int, int] = (416, 416)
    color_order: str = "RGB"
    scale: float = 1.0 / 255.0
    pad_value: int = 114
    resize: str = "letterbox"
    strides: tuple[int, ...] = (8, 16, 32)
    anchors: tuple[tuple[float, ...], ...] = DEFAULT_ANCHORS
    output_layout: str = "yolov5_raw"
    precision: str = "fp32"
    operating_threshold: float = 0.5
    nms_iou: float = 0.45
    weights_sha256: str | None = None
    onnx_sha256: str | None = None
    architecture: str | None = None
    training_data: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    spec_version: int = SPEC_VERSION

    def __post_init__(self) -> None:
        self.class_names = [str(n) for n in self.class_names]
        self.input_size = tuple(int(v) for v in self.input_size)  # type: ignore[assignment]
        self.strides = tuple(int(v) for v in self.strides)
        self.anchors = tuple(tuple(float(v) for v in row) for row in self.anchors)
        self.validate()

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def num_outputs(self) -> int:
        """Rows of the raw head for one image: anchors per cell x cells summed over levels."""
        h, w = self.input_size
        per_cell = len(self.anchors[0]) // 2
        return sum(per_cell * (h // s) * (w // s) for s in self.strides)

    def validate(self) -> None:
        def fail(name: str, why: str) -> None:
            raise ModelSpecError(f"ModelSpec.{name}: {why}")

        if not self.class_names:
            fail("class_names", "must name at least one class")
        if len(self.input_size) != 2 or min(self.input_size) <= 0:
            fail("input_size", f"must be (height, width) > 0, got {self.input_size}")
        if not self.strides or any(s <= 0 for s in self.strides):
            fail("strides", f"must be positive, got {self.strides}")
        if any(v % max(self.strides) for v in self.input_size):
            fail(
                "input_size", f"{self.input_size} is not a multiple of the largest stride {max(self.strides)}"
            )
        if len(self.anchors) != len(self.strides):
            fail("anchors", f"{len(self.anchors)} levels but {len(self.strides)} strides")
        if any(len(row) % 2 or len(row) != len(self.anchors[0]) for row in self.anchors):
            fail("anchors", "every level needs the same number of (w, h) pairs")
        if self.color_order not in COLOR_ORDERS:
            fail("color_order", f"must be one of {COLOR_ORDERS}, got {self.color_order!r}")
        if self.resize not in RESIZE_MODES:
            fail("resize", f"must be one of {RESIZE_MODES}, got {self.resize!r}")
        if self.output_layout not in OUTPUT_LAYOUTS:
            fail("output_layout", f"must be one of {OUTPUT_LAYOUTS}, got {self.output_layout!r}")
        if self.precision not in PRECISIONS:
            fail("precision", f"must be one of {PRECISIONS}, got {self.precision!r}")
        for name in ("operating_threshold", "nms_iou"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and 0.0 <= value <= 1.0):
                fail(name, f"must be in [0, 1], got {value!r}")
        if not (0 <= self.pad_value <= 255):
            fail("pad_value", f"must be in [0, 255], got {self.pad_value}")
        if not (math.isfinite(self.scale) and self.scale > 0):
            fail("scale", f"must be > 0, got {self.scale}")
        if self.spec_version > SPEC_VERSION:
            fail(
                "spec_version", f"{self.spec_version} is newer than this runtime understands ({SPEC_VERSION})"
            )

    # --- serialisation -------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        if data["resize"] == "letterbox":
            # The default is left out, so a letterbox spec is the JSON it was before the field
            # existed: runtimes already on cars (which refuse unknown keys) still read it.
            del data["resize"]
        data["input_size"] = list(self.input_size)
        data["strides"] = list(self.strides)
        data["anchors"] = [list(row) for row in self.anchors]
        return data

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "ModelSpec") -> ModelSpec:
        if not isinstance(data, dict):
            raise ModelSpecError(f"{source}: expected a JSON object, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ModelSpecError(f"{source}: unknown ModelSpec keys {unknown}")
        if "class_names" not in data:
            raise ModelSpecError(f"{source}: missing required key 'class_names'")
        try:
            return cls(**data)
        except ModelSpecError as exc:
            raise ModelSpecError(f"{source}: {exc}") from None
        except (TypeError, ValueError) as exc:
            raise ModelSpecError(f"{source}: {exc}") from None

    @classmethod
    def from_json(cls, text: str, source: str = "ModelSpec") -> ModelSpec:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ModelSpecError(f"{source}: not valid JSON ({exc})") from None
        return cls.from_dict(data, source)

    @classmethod
    def load(cls, path: str | Path) -> ModelSpec:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ModelSpecError(f"{path}: cannot read ModelSpec ({exc.strerror})") from None
        return cls.from_json(text, source=str(path))

    def save(self, path: str | Path) -> Path:
        return atomic_write_text(path, self.to_json() + "\n")

    def replace(self, **changes: Any) -> ModelSpec:
        return dataclasses.replace(self, **changes)
