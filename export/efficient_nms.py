"""Append TensorRT's EfficientNMS_TRT plugin node to the raw YOLOv5 head (``--nms``).

TensorRT-only: ONNX Runtime has no such operator, so a model exported with ``--nms`` is for
building engines. The node has domain ``TRT`` (TensorRT's ONNX parser resolves an unknown op by
its op type in the plugin registry; the domain keeps ``onnx.checker`` from looking for it in the
standard opset).

Graph added, for raw ``(b, N, 5 + nc)``::

    boxes  = raw[..., 0:4]                       (b, N, 4)  cx, cy, w, h in input pixels
    scores = raw[..., 4:5] * raw[..., 5:]        (b, N, nc) objectness x class probability
    num_dets (b, 1) int32, det_boxes (b, K, 4) float32 x1 y1 x2 y2 in input pixels,
    det_scores (b, K) float32, det_classes (b, K) int32   = EfficientNMS_TRT(boxes, scores)

``box_coding=1`` tells the plugin the boxes are centre-size; its outputs are always corners.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

PLUGIN_OP = "EfficientNMS_TRT"
PLUGIN_DOMAIN = "TRT"
NMS_METADATA_KEY = "stopsign.efficient_nms"
OUTPUT_NAMES = ("num_dets", "det_boxes", "det_scores", "det_classes")


@dataclass(frozen=True)
class NmsOptions:
    """Parameters baked into the plugin node.

    Attributes:
        score_threshold: drop boxes scoring below this (objectness x class probability).
        iou_threshold: IoU above which a lower-scoring box of the same class is suppressed.
        max_detections: K, detections kept per image (outputs are padded to K).
        class_agnostic: suppress across classes too.
    """

    score_threshold: float = 0.25
    iou_threshold: float = 0.45
    max_detections: int = 100
    class_agnostic: bool = False

    def validate(self) -> None:
        for name in ("score_threshold", "iou_threshold"):
            value = getattr(self, name)
            if not (math.isfinite(value) and 0.0 <= value <= 1.0):
                raise ValueError(f"NmsOptions.{name} must be in [0, 1], got {value}")
        if self.max_detections < 1:
            raise ValueError(f"NmsOptions.max_detections must be >= 1, got {self.max_detections}")


def append_efficient_nms(
    proto: onnx.ModelProto, raw_output: str, options: NmsOptions, num_classes: int
) -> onnx.ModelProto:
    """Replace graph output ``raw_output`` (b, N, 5 + nc) by the four EfficientNMS_TRT outputs."""
    options.validate()
    graph = proto.graph
    outputs = [o for o in graph.output if o.name == raw_output]
    if not outputs:
        raise ValueError(f"graph has no output {raw_output!r} (outputs: {[o.name for o in graph.output]})")
    raw_type = outputs[0].type.tensor_type
    if raw_type.elem_type != TensorProto.FLOAT:
        raise ValueError(
            f"{raw_output} must be float32 for EfficientNMS_TRT, got elem_type {raw_type.elem_type}"
        )
    batch_dim = raw_type.shape.dim[0]
    batch: str | int = batch_dim.dim_param or batch_dim.dim_value

    def const(name: str, values: list[int]) -> str:
        graph.initializer.append(numpy_helper.from_array(np.asarray(values, dtype=np.int64), name))
        return name

    starts = {
        k: const(f"nms/{k}", v)
        for k, v in {"box0": [0], "box1": [4], "obj1": [5], "end": [5 + num_classes]}.items()
    }
    axis = const("nms/axis", [2])
    graph.node.extend(
        [
            helper.make_node(
                "Slice", [raw_output, starts["box0"], starts["box1"], axis], ["nms/boxes"], name="nms/boxes"
            ),
            helper.make_node(
                "Slice", [raw_output, starts["box1"], starts["obj1"], axis], ["nms/obj"], name="nms/obj"
            ),
            helper.make_node(
                "Slice", [raw_output, starts["obj1"], starts["end"], axis], ["nms/cls"], name="nms/cls"
            ),
            helper.make_node("Mul", ["nms/obj", "nms/cls"], ["nms/scores"], name="nms/scores"),
            helper.make_node(
                PLUGIN_OP,
                ["nms/boxes", "nms/scores"],
                list(OUTPUT_NAMES),
                name="nms/EfficientNMS_TRT",
                domain=PLUGIN_DOMAIN,
                plugin_version="1",
                background_class=-1,
                box_coding=1,
                score_activation=0,
                class_agnostic=int(options.class_agnostic),
                iou_threshold=float(options.iou_threshold),
                score_threshold=float(options.score_threshold),
                max_output_boxes=int(options.max_detections),
            ),
        ]
    )
    k = options.max_detections
    del graph.output[:]
    graph.output.extend(
        [
            helper.make_tensor_value_info("num_dets", TensorProto.INT32, [batch, 1]),
            helper.make_tensor_value_info("det_boxes", TensorProto.FLOAT, [batch, k, 4]),
            helper.make_tensor_value_info("det_scores", TensorProto.FLOAT, [batch, k]),
            helper.make_tensor_value_info("det_classes", TensorProto.INT32, [batch, k]),
        ]
    )
    if not any(o.domain == PLUGIN_DOMAIN for o in proto.opset_import):
        proto.opset_import.append(helper.make_opsetid(PLUGIN_DOMAIN, 1))
    proto.metadata_props.append(
        onnx.StringStringEntryProto(key=NMS_METADATA_KEY, value=json.dumps(asdict(options)))
    )
    return proto
