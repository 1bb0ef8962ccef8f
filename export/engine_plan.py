"""Decisions for a TensorRT build that need no TensorRT: what the ONNX holds, which network mode and
builder flags to use on which TensorRT, and how to summarise the built engine's layer precisions.

Kept apart from :mod:`stopsign.export.tensorrt_build` so it is tested on machines without TensorRT.

TensorRT 10 (JetPack 6, desktop 10.x): a weakly typed network from the FP32 ONNX and the builder
flags FP16 / INT8 choose precisions; INT8 takes either a Q/DQ ONNX (explicit quantization) or an
FP32 ONNX plus an ``IInt8Calibrator`` (implicit, deprecated since 10.1).
TensorRT 11: the FP16/INT8 flags and implicit calibration are gone; the network is strongly typed
and takes its types from the ONNX, so FP16 needs the FP16 ONNX (``edge-export onnx --half``) and
INT8 needs a Q/DQ ONNX (``edge-calibrate qdq``).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx

from stopsign.edge.model.spec import ONNX_METADATA_KEY, ModelSpec

ENGINE_PRECISIONS = ("fp32", "fp16", "int8")


class EngineBuildError(RuntimeError):
    """The engine cannot be built as asked; the message says what to change."""


@dataclass(frozen=True)
class OnnxTraits:
    """What the builder must know about the source ONNX.

    Attributes:
        spec: the ModelSpec from its metadata.
        has_qdq: contains QuantizeLinear/DequantizeLinear (explicitly quantized INT8).
        float_type: "fp16" when its weights are float16 (``--half`` export), else "fp32".
        input_name: the image input; input_shape: its shape, -1 for a symbolic (dynamic) axis.
    """

    spec: ModelSpec
    has_qdq: bool
    float_type: str
    input_name: str
    input_shape: tuple[int, ...]

    @property
    def dynamic_batch(self) -> bool:
        return self.input_shape[0] < 0


def inspect_onnx(path: str | Path) -> OnnxTraits:
    """Read the traits of an ONNX file exported by ``edge-export onnx`` (or ``edge-calibrate qdq``)."""
    path = Path(path)
    model = onnx.load(str(path), load_external_data=False)
    meta = {p.key: p.value for p in model.metadata_props}
    if ONNX_METADATA_KEY not in meta:
        raise EngineBuildError(f"{path}: no ModelSpec in its metadata; export it with `edge-export onnx`")
    spec = ModelSpec.from_json(meta[ONNX_METADATA_KEY], source=f"{path} metadata")
    ops = {node.op_type for node in model.graph.node}
    has_qdq = bool(ops & {"QuantizeLinear", "DequantizeLinear"})
    fp16_weights = sum(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer)
    fp32_weights = sum(t.data_type == onnx.TensorProto.FLOAT for t in model.graph.initializer)
    initializers = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise EngineBuildError(f"{path}: expected one image input, found {[i.name for i in inputs]}")
    dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in inputs[0].type.tensor_type.shape.dim)
    return OnnxTraits(
        spec=spec,
        has_qdq=has_qdq,
        float_type="fp16" if fp16_weights > fp32_weights else "fp32",
        input_name=inputs[0].name,
        input_shape=dims,
    )


@dataclass(frozen=True)
class BuildPlan:
    """How to build: ``strongly_typed`` network or not, and the BuilderFlag names to set."""

    strongly_typed: bool
    builder_flags: tuple[str, ...] = ()
    use_calibrator: bool = False
    notes: tuple[str, ...] = field(default=())


def plan_build(
    precision: str, has_precision_flags: bool, traits: OnnxTraits, calibrator_given: bool
) -> BuildPlan:
    """Choose the network mode and flags.

    Args:
        precision: "fp32", "fp16" or "int8".
        has_precision_flags: TensorRT still has ``BuilderFlag.FP16`` (TensorRT <= 10); False on 11+.
        traits: of the source ONNX.
        calibrator_given: an ``IInt8Calibrator`` was supplied (TensorRT 10 implicit INT8 only).
    """
    if precision not in ENGINE_PRECISIONS:
        raise EngineBuildError(f"precision must be one of {ENGINE_PRECISIONS}, got {precision!r}")
    if calibrator_given and precision != "int8":
        raise EngineBuildError("a calibrator only makes sense with --precision int8")
    if not has_precision_flags:
        return _plan_strongly_typed(precision, traits, calibrator_given)
    if precision == "fp32":
        if traits.float_type == "fp16" or traits.has_qdq:
            raise EngineBuildError("--precision fp32 needs the FP32 ONNX (this one is FP16 or Q/DQ)")
        return BuildPlan(strongly_typed=False)
    if precision == "fp16":
        if traits.has_qdq:
            raise EngineBuildError(
                "--precision fp16 from a Q/DQ ONNX: use --precision int8 or the FP32/FP16 ONNX"
            )
        return BuildPlan(strongly_typed=False, builder_flags=("FP16",))
    # int8 on TensorRT 10: FP16 too, so layers TensorRT keeps out of INT8 run in FP16, not FP32.
    if traits.has_qdq:
        if calibrator_given:
            raise EngineBuildError("a Q/DQ ONNX carries its own scales; drop the calibrator (--calib)")
        return BuildPlan(
            strongly_typed=False, builder_flags=("INT8", "FP16"), notes=("explicit Q/DQ quantization",)
        )
    if not calibrator_given:
        raise EngineBuildError(
            "--precision int8 from an ONNX without Q/DQ needs calibration: give --calib DIR (TensorRT 10) "
            "or build from a Q/DQ ONNX (`edge-calibrate qdq`)"
        )
    return BuildPlan(
        strongly_typed=False,
        builder_flags=("INT8", "FP16"),
        use_calibrator=True,
        notes=("implicit INT8 calibration (deprecated in TensorRT 10.1, removed in 11)",),
    )


def _plan_strongly_typed(precision: str, traits: OnnxTraits, calibrator_given: bool) -> BuildPlan:
    if calibrator_given:
        raise EngineBuildError(
            "this TensorRT has no implicit INT8 calibration (removed in TensorRT 11): build from a Q/DQ ONNX "
            "made with `edge-calibrate qdq` instead of --calib"
        )
    if precision == "int8" and not traits.has_qdq:
        raise EngineBuildError(
            "TensorRT 11+ builds INT8 only from a Q/DQ ONNX: run `edge-calibrate qdq` first"
        )
    if precision == "fp16" and traits.float_type != "fp16":
        raise EngineBuildError(
            "TensorRT 11+ takes precision from the ONNX types: export the FP16 ONNX (`edge-export onnx --half`)"
        )
    if precision == "fp32" and (traits.float_type == "fp16" or traits.has_qdq):
        raise EngineBuildError("--precision fp32 needs the FP32 ONNX (this one is FP16 or Q/DQ)")
    return BuildPlan(strongly_typed=True, notes=("strongly typed: precisions come from the ONNX",))


# TensorRT's engine inspector writes each tensor's format as free text, e.g.
# "Channel major FP16 format where channel % 8 == 0" or "Row major linear FP32".
_DTYPE_WORDS = {
    "FP32": "fp32", "Float": "fp32", "FP16": "fp16", "Half": "fp16", "Int8": "int8", "INT8": "int8",
    "Int32": "int32", "INT32": "int32", "Int64": "int64", "BF16": "bf16", "FP8": "fp8", "Bool": "bool",
}  # fmt: skip
_DTYPE_RE = re.compile(r"\b(" + "|".join(_DTYPE_WORDS) + r")\b")


def layer_output_precision(layer: Any) -> str:
    """Precision of a layer's first output from the inspector's JSON; "unknown" when not stated."""
    if not isinstance(layer, dict):
        return "unknown"
    outputs = layer.get("Outputs") or []
    if outputs and isinstance(outputs[0], dict):
        match = _DTYPE_RE.search(str(outputs[0].get("Format/Datatype", "")))
        if match:
            return _DTYPE_WORDS[match.group(1)]
    return "unknown"


def summarize_layer_precisions(engine_information: dict[str, Any]) -> Counter[str]:
    """Count layers per output precision from ``IEngineInspector.get_engine_information(JSON)``.

    Needs the engine built with ``ProfilingVerbosity.DETAILED``; otherwise the layers are bare
    names and all count as "unknown".
    """
    return Counter(layer_output_precision(layer) for layer in engine_information.get("Layers", []))


def format_precision_summary(counts: Counter[str]) -> str:
    total = sum(counts.values())
    parts = ", ".join(f"{name} {n}" for name, n in counts.most_common())
    return f"{total} layers: {parts}" if total else "no layer information"
