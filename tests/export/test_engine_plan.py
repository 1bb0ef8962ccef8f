"""TensorRT build decisions (no TensorRT needed): TensorRT 10 flags vs TensorRT 11 strong typing."""

from __future__ import annotations

import pytest

from stopsign.export.engine_plan import (
    EngineBuildError,
    OnnxTraits,
    format_precision_summary,
    inspect_onnx,
    plan_build,
    summarize_layer_precisions,
)


def traits(spec, qdq=False, float_type="fp32"):
    return OnnxTraits(spec, qdq, float_type, "images", (1, 3, 160, 160))


@pytest.mark.parametrize(
    ("precision", "flags_api", "qdq", "float_type", "calib", "strong", "flags"),
    [
        ("fp32", True, False, "fp32", False, False, ()),
        ("fp16", True, False, "fp32", False, False, ("FP16",)),
        ("fp16", True, False, "fp16", False, False, ("FP16",)),
        ("int8", True, True, "fp32", False, False, ("INT8", "FP16")),
        ("int8", True, False, "fp32", True, False, ("INT8", "FP16")),
        ("fp16", False, False, "fp16", False, True, ()),
        ("int8", False, True, "fp32", False, True, ()),
        ("fp32", False, False, "fp32", False, True, ()),
    ],
)
def test_plans(spec, precision, flags_api, qdq, float_type, calib, strong, flags):
    plan = plan_build(precision, flags_api, traits(spec, qdq, float_type), calib)
    assert (plan.strongly_typed, plan.builder_flags, plan.use_calibrator) == (strong, flags, calib)


@pytest.mark.parametrize(
    ("precision", "flags_api", "qdq", "float_type", "calib", "message"),
    [
        ("int8", True, False, "fp32", False, "needs calibration"),
        ("int8", False, False, "fp32", False, "Q/DQ"),
        ("int8", False, True, "fp32", True, "no implicit INT8"),
        ("fp16", False, False, "fp32", False, "--half"),
        ("fp32", True, False, "fp16", False, "FP32 ONNX"),
        ("fp16", True, False, "fp32", True, "calibrator"),
        ("int8", True, True, "fp32", True, "drop the calibrator"),
        ("bf16", True, False, "fp32", False, "precision must be"),
    ],
)
def test_refused_plans(spec, precision, flags_api, qdq, float_type, calib, message):
    with pytest.raises(EngineBuildError, match=message):
        plan_build(precision, flags_api, traits(spec, qdq, float_type), calib)


def test_inspect_onnx(fp32_onnx, fp16_onnx, spec):
    t32, t16 = inspect_onnx(fp32_onnx), inspect_onnx(fp16_onnx)
    assert (t32.float_type, t16.float_type, t32.has_qdq) == ("fp32", "fp16", False)
    assert t32.input_shape == (1, 3, *spec.input_size) and not t32.dynamic_batch


def test_layer_precision_summary():
    info = {
        "Layers": [
            {"Name": "conv", "Outputs": [{"Name": "a", "Format/Datatype": "Channel major FP16 format where channel % 8 == 0"}]},
            {"Name": "sig", "Outputs": [{"Name": "b", "Format/Datatype": "Row major linear FP32"}]},
            {"Name": "q", "Outputs": [{"Name": "c", "Format/Datatype": "Thirty-two wide channel vectorized row major Int8 format"}]},
            "bare-name-without-detailed-verbosity",
        ]
    }  # fmt: skip
    counts = summarize_layer_precisions(info)
    assert counts == {"fp16": 1, "fp32": 1, "int8": 1, "unknown": 1}
    assert format_precision_summary(counts).startswith("4 layers:")
