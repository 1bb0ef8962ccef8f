"""export_onnx: graph interface, metadata, op allow-list, atomic write, bad arguments."""

from __future__ import annotations

import onnx
import pytest
import torch

from stopsign.edge.model.onnx_meta import onnx_sha256, read_spec_from_onnx
from stopsign.edge.model.spec import ONNX_METADATA_KEY, ModelSpecError
from stopsign.export.onnx_export import ExportError, export_checkpoint, export_onnx

# ONNX ops TensorRT 8.6+ imports (onnx-tensorrt operator support list) that a YOLOv5 export may use.
TENSORRT_OPS = {
    "Add", "Cast", "Concat", "Constant", "Conv", "Div", "Expand", "Gather", "Identity", "MaxPool", "Mul",
    "Pow", "Reshape", "Resize", "Shape", "Sigmoid", "Slice", "Split", "Sub", "Transpose", "Unsqueeze",
    "QuantizeLinear", "DequantizeLinear",
}  # fmt: skip


def io_signature(path):
    graph = onnx.load(str(path)).graph

    def dims(v):
        return [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]

    return [(v.name, v.type.tensor_type.elem_type, dims(v)) for v in (*graph.input, *graph.output)]


@pytest.mark.parametrize(
    ("kwargs", "batch"),
    [({}, 1), ({"batch": 2}, 2), ({"dynamic": True}, "batch"), ({"half": True}, 1)],
)
def test_io_names_shapes_and_float32(model, spec, tmp_path, kwargs, batch):
    path = export_onnx(model, spec, tmp_path / "m.onnx", **kwargs)
    f32 = onnx.TensorProto.FLOAT
    assert io_signature(path) == [
        ("images", f32, [batch, 3, *spec.input_size]),
        ("output0", f32, [batch, spec.num_outputs, 5 + spec.num_classes]),
    ]
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)


def test_spec_round_trips_through_metadata(spec, fp32_onnx, fp16_onnx):
    assert read_spec_from_onnx(fp32_onnx) == spec.replace(precision="fp32", output_layout="yolov5_raw")
    assert read_spec_from_onnx(fp16_onnx).precision == "fp16"
    assert len(onnx_sha256(fp32_onnx)) == 64


def test_opset_and_ops_are_tensorrt_compatible(fp32_onnx, fp16_onnx):
    for path in (fp32_onnx, fp16_onnx):
        proto = onnx.load(str(path))
        assert {o.domain: o.version for o in proto.opset_import}[""] >= 17
        ops = {node.op_type for node in proto.graph.node}
        assert ops <= TENSORRT_OPS, f"ops outside the TensorRT allow-list: {sorted(ops - TENSORRT_OPS)}"
        assert "BatchNormalization" not in ops


def test_model_is_not_modified(model, spec, tmp_path):
    before = {k: v.clone() for k, v in model.state_dict().items()}
    export_onnx(model, spec, tmp_path / "m.onnx")
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert model.detect.export is False


def test_atomic_write_leaves_no_temporary_files(model, spec, tmp_path):
    export_onnx(model, spec, tmp_path / "m.onnx")
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"batch": 0}, "batch"), ({"opset": 16}, "opset"), ({"exporter": "jit"}, "exporter")],
)
def test_bad_arguments(model, spec, tmp_path, kwargs, message):
    with pytest.raises(ExportError, match=message):
        export_onnx(model, spec, tmp_path / "m.onnx", **kwargs)
    assert not (tmp_path / "m.onnx").exists()


def test_spec_for_another_model_is_refused(model, spec, tmp_path):
    with pytest.raises(ExportError, match="classes"):
        export_onnx(model, spec.replace(class_names=["a", "b"]), tmp_path / "m.onnx")


def test_export_checkpoint_sets_input_size(checkpoint_dir, tmp_path):
    path = export_checkpoint(checkpoint_dir, tmp_path / "m.onnx", (128, 192))
    assert read_spec_from_onnx(path).input_size == (128, 192)
    with pytest.raises(ModelSpecError, match="multiple"):
        export_checkpoint(checkpoint_dir, tmp_path / "bad.onnx", 100)


def test_onnx_without_spec_gives_clear_error(fp32_onnx, tmp_path):
    proto = onnx.load(str(fp32_onnx))
    del proto.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(proto, str(bare))
    with pytest.raises(ModelSpecError, match=ONNX_METADATA_KEY):
        read_spec_from_onnx(bare)
