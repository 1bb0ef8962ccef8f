"""Q/DQ INT8 export: TensorRT-compatible quantization, float head, ModelSpec, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from stopsign.calibration.calibset import CalibrationSet
from stopsign.calibration.errors import CalibrationError
from stopsign.calibration.qdq import QdqOptions, _chunk_size, head_and_tail_nodes, quantize_qdq
from stopsign.edge.model.onnx_meta import read_spec_from_onnx
from stopsign.edge.model.spec import ONNX_METADATA_KEY


def _dq_fed_convs(graph: onnx.GraphProto) -> set[str]:
    dq_out = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    return {n.name for n in graph.node if n.op_type == "Conv" and n.input[0] in dq_out}


@pytest.mark.parametrize("method", ["minmax", "entropy", "percentile"])
def test_qdq_is_tensorrt_shaped(fp32_model: Path, calib_dir: Path, tmp_path: Path, method: str) -> None:
    out = tmp_path / f"m.{method}.onnx"
    result = quantize_qdq(fp32_model, calib_dir, out, QdqOptions(method=method, chunk=8))
    assert result.n_images == 16 and result.chunk == 8 and result.peak_rss_mib > 0
    model = onnx.load(str(out))
    graph = model.graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    qnodes = [n for n in graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert qnodes
    for node in qnodes:  # symmetric signed INT8: zero points are int8 zeros
        zero_point = inits.get(node.input[2]) if len(node.input) > 2 else None
        if zero_point is not None:
            assert zero_point.dtype == np.int8 and not zero_point.any(), node.name
    # Per-channel weights: some DequantizeLinear of a weight has one scale per output channel.
    per_channel = [
        n
        for n in qnodes
        if n.op_type == "DequantizeLinear"
        and inits.get(n.input[1]) is not None
        and inits[n.input[1]].size > 1
    ]
    assert per_channel
    # Head convs and decode stay float; every other conv reads a dequantized input.
    head = set(head_and_tail_nodes(onnx.load(str(fp32_model)).graph))
    convs = {n.name for n in graph.node if n.op_type == "Conv"}
    head_convs = convs & head
    assert len(head_convs) == 3  # one per Detect level
    assert _dq_fed_convs(graph) == convs - head_convs
    spec = read_spec_from_onnx(out)
    assert spec.precision == "int8" and spec.input_size == (160, 160)


def test_keep_float_extra_node_and_glob(fp32_model: Path, calib_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.onnx"
    options = QdqOptions(keep_float=("/model.0/conv/Conv", "/model.23/*"), chunk=16)
    quantize_qdq(fp32_model, calib_dir, out, options)
    fed = _dq_fed_convs(onnx.load(str(out)).graph)
    assert "/model.0/conv/Conv" not in fed
    assert not any(name.startswith("/model.23/") for name in fed)
    assert "/model.1/conv/Conv" in fed


def test_int8_outputs_track_fp32(fp32_model: Path, calib_dir: Path, tmp_path: Path) -> None:
    import onnxruntime

    out = tmp_path / "m.onnx"
    quantize_qdq(fp32_model, calib_dir, out, QdqOptions())
    calib = CalibrationSet.load(calib_dir, read_spec_from_onnx(fp32_model))
    runs = [
        onnxruntime.InferenceSession(str(p), providers=["CPUExecutionProvider"]) for p in (fp32_model, out)
    ]
    x = calib.image(0)
    ref, q = (s.run(None, {"images": x})[0] for s in runs)
    assert ref.shape == q.shape
    assert not np.array_equal(ref, q)  # quantization did change the computation
    np.testing.assert_allclose(q[..., :4], ref[..., :4], atol=2.0)  # boxes within 2 px at 160 px


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ("drop_spec", "no 'stopsign.model_spec' in the ONNX metadata"),
        ("int8_spec", "already INT8"),
    ],
)
def test_bad_models(fp32_model: Path, calib_dir: Path, tmp_path: Path, change: str, match: str) -> None:
    model = onnx.load(str(fp32_model))
    entry = next(p for p in model.metadata_props if p.key == ONNX_METADATA_KEY)
    if change == "drop_spec":
        model.metadata_props.remove(entry)
    else:
        entry.value = json.dumps({**json.loads(entry.value), "precision": "int8"})
    bad = tmp_path / "bad.onnx"
    onnx.save(model, str(bad))
    with pytest.raises(CalibrationError, match=match):
        quantize_qdq(bad, calib_dir, tmp_path / "out.onnx", QdqOptions())
    assert not (tmp_path / "out.onnx").exists()


@pytest.mark.parametrize(
    ("options", "match"),
    [
        (QdqOptions(keep_float=("/model.99/*",)), r"--keep-float '/model.99/\*' matches no node"),
        (QdqOptions(method="kl"), "method must be one of"),
        (QdqOptions(max_images=4), r"4 calibration image\(s\), need at least 8 \(limited to 4\)"),
    ],
)
def test_bad_options(
    fp32_model: Path, calib_dir: Path, tmp_path: Path, options: QdqOptions, match: str
) -> None:
    with pytest.raises(CalibrationError, match=match):
        quantize_qdq(fp32_model, calib_dir, tmp_path / "out.onnx", options)


@pytest.mark.parametrize(
    ("n", "chunk", "batch", "expected"),
    [
        (16, 8, 1, 8),
        (16, 16, 1, 16),
        (500, 16, 1, 10),
        (17, 16, 1, 1),
        (12, 100, 1, 12),
        (16, 8, 2, 8),
        (12, 5, 2, 4),
    ],
)
def test_chunk_size_divides_the_set(n: int, chunk: int, batch: int, expected: int) -> None:
    assert _chunk_size(n, chunk, batch) == expected
