"""Signed INT8 activations rewritten as unsigned: the same grid, so ONNX Runtime's output is identical."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from stopsign.edge.model.qdq_unsigned import has_signed_activations, unsigned_activations  # noqa: E402

SHIPPED_INT8 = Path(__file__).resolve().parents[3] / "edge" / "assets" / "stopsign.int8.onnx"


def _run(proto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def test_the_shipped_qdq_file_gives_bit_identical_outputs_after_the_rewrite() -> None:
    proto = onnx.load(str(SHIPPED_INT8))
    assert has_signed_activations(proto)
    x = np.random.default_rng(0).random((1, 3, 416, 416), dtype=np.float32)
    before = _run(proto, x)
    changed = unsigned_activations(proto)
    assert changed > 0 and not has_signed_activations(proto)
    assert np.array_equal(_run(proto, x), before)
    # Per-channel weight zero points stay int8; a second pass changes nothing.
    assert unsigned_activations(proto) == 0


@pytest.mark.parametrize("zero_point", [-128, -5, 0, 7, 127])
def test_any_int8_zero_point_maps_to_the_same_values(zero_point: int) -> None:
    """Q then DQ of one tensor, clamping at both ends included, for several zero points."""
    from onnx import TensorProto, helper, numpy_helper

    scale = numpy_helper.from_array(np.array(0.05, np.float32), "scale")
    zp = numpy_helper.from_array(np.array(zero_point, np.int8), "zp")
    graph = helper.make_graph(
        [
            helper.make_node("QuantizeLinear", ["x", "scale", "zp"], ["q"]),
            helper.make_node("DequantizeLinear", ["q", "scale", "zp"], ["y"]),
        ],
        "qdq",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [64])],
        initializer=[scale, zp],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    proto.ir_version = 8
    x = np.linspace(-20, 20, 64, dtype=np.float32)
    before = _run(proto, x)
    unsigned_activations(proto)
    assert np.array_equal(_run(proto, x), before)
