"""--nms: the EfficientNMS_TRT node, its inputs (checked by running the slices in ONNX Runtime)."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from stopsign.edge.model.onnx_meta import read_spec_from_onnx
from stopsign.export.efficient_nms import OUTPUT_NAMES, NmsOptions
from stopsign.export.onnx_export import export_onnx


@pytest.fixture(scope="module")
def nms_onnx(model, spec, export_dir):
    return export_onnx(model, spec, export_dir / "nms.onnx", nms=NmsOptions(0.3, 0.5, 50))


def test_plugin_node_and_outputs(nms_onnx, spec):
    proto = onnx.load(str(nms_onnx))
    node = proto.graph.node[-1]
    assert (node.op_type, node.domain) == ("EfficientNMS_TRT", "TRT")
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    assert attrs["box_coding"] == 1 and attrs["max_output_boxes"] == 50
    assert attrs["score_threshold"] == pytest.approx(0.3) and attrs["iou_threshold"] == pytest.approx(0.5)
    assert [o.name for o in proto.graph.output] == list(OUTPUT_NAMES)
    assert read_spec_from_onnx(nms_onnx).output_layout == "efficient_nms"
    onnx.checker.check_model(proto)


def test_plugin_inputs_are_boxes_and_scores(nms_onnx, fp32_onnx, spec):
    proto = onnx.load(str(nms_onnx))
    proto.graph.node.pop()  # ONNX Runtime has no EfficientNMS_TRT: run the graph up to its inputs
    del proto.graph.output[:]
    proto.graph.output.extend(
        [onnx.helper.make_empty_tensor_value_info(n) for n in ("nms/boxes", "nms/scores")]
    )
    x = np.random.default_rng(0).random((1, 3, *spec.input_size), dtype=np.float32)
    boxes, scores = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"images": x}
    )
    raw = ort.InferenceSession(str(fp32_onnx), providers=["CPUExecutionProvider"]).run(None, {"images": x})[0]
    np.testing.assert_allclose(boxes, raw[..., :4], rtol=1e-6)
    np.testing.assert_allclose(scores, raw[..., 4:5] * raw[..., 5:], rtol=1e-6)


@pytest.mark.parametrize("bad", [NmsOptions(score_threshold=1.5), NmsOptions(max_detections=0)])
def test_bad_nms_options(model, spec, tmp_path, bad):
    with pytest.raises(ValueError, match="NmsOptions"):
        export_onnx(model, spec, tmp_path / "m.onnx", nms=bad)
