"""torch -> ONNX for the YOLOv5 model: BN fused, simplified, checked, ModelSpec in the metadata.

The graph has one input ``images`` (batch, 3, H, W) float32, RGB scaled to [0, 1], and one output
``output0`` (batch, N, 5 + nc) float32: the "yolov5_raw" layout of :class:`ModelSpec` (cx, cy, w,
h in input pixels, objectness, class probabilities). With ``half=True`` the weights and compute
are float16 but the I/O stays float32 (Cast nodes at the boundary), so the runtime feeds the same
buffer either way. With ``nms`` the EfficientNMS_TRT plugin node is appended (TensorRT-only,
:mod:`stopsign.export.efficient_nms`).

Exporter: the legacy TorchScript exporter (``dynamo=False``) by default. After onnxslim both
exporters give the same 242-node graph for yolov5n, but the TorchScript one exports in 0.3 s
instead of ~8 s, needs no onnxscript, emits opset 17 / IR 8 (which TensorRT 8.6's parser and old
onnxruntime builds read) and names nodes after the module path (``/model.24/m.0/Conv``), which
makes TensorRT's layer-precision summary readable. ``exporter="dynamo"`` is kept for when torch
drops the legacy exporter (docs/export.md).
"""

from __future__ import annotations

import copy
import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import onnx
import torch

from stopsign.edge.model.artifacts import atomic_write_bytes
from stopsign.edge.model.spec import ONNX_METADATA_KEY, ModelSpec
from stopsign.export.efficient_nms import NmsOptions, append_efficient_nms
from stopsign.train.checkpoint import load_checkpoint
from stopsign.train.model.yolo import YoloModel

INPUT_NAME = "images"
OUTPUT_NAME = "output0"
DEFAULT_OPSET = 17
EXPORTERS = ("torchscript", "dynamo")


class ExportError(RuntimeError):
    """The model cannot be exported as asked; the message names the argument or file at fault."""


@dataclass(frozen=True)
class ExportOptions:
    """How to export (see :func:`export_onnx`)."""

    batch: int = 1
    dynamic: bool = False
    half: bool = False
    simplify: bool = True
    nms: NmsOptions | None = None
    opset: int = DEFAULT_OPSET
    exporter: str = "torchscript"

    def validate(self) -> None:
        if self.batch < 1:
            raise ExportError(f"batch must be >= 1, got {self.batch}")
        if self.opset < 17:
            raise ExportError(f"opset must be 17 or newer, got {self.opset}")
        if self.exporter not in EXPORTERS:
            raise ExportError(f"exporter must be one of {EXPORTERS}, got {self.exporter!r}")


def export_onnx(
    model: YoloModel,
    spec: ModelSpec,
    out: str | Path,
    batch: int = 1,
    dynamic: bool = False,
    half: bool = False,
    simplify: bool = True,
    nms: NmsOptions | None = None,
    opset: int = DEFAULT_OPSET,
    exporter: str = "torchscript",
) -> Path:
    """Export ``model`` at ``spec.input_size`` to ``out`` (written atomically) and return ``out``.

    Args:
        model: the trained model; it is not modified (BN fusion happens on a deep copy).
        spec: its ModelSpec; ``precision`` and ``output_layout`` are set here before storing it.
        batch: static batch size of the graph (the example batch when ``dynamic``).
        dynamic: make the batch axis symbolic (``batch``); H and W stay fixed.
        half: float16 weights and compute, float32 input and output.
        simplify: run onnxslim (constant folding, dead-node removal).
        nms: append TensorRT's EfficientNMS_TRT with these settings (graph then runs on TensorRT only).
    """
    options = ExportOptions(batch, dynamic, half, simplify, nms, opset, exporter)
    options.validate()
    _check_spec_matches(model, spec)
    proto = _torch_to_onnx(model, spec, options)
    if options.simplify:
        import onnxslim

        proto = onnxslim.slim(proto)
    if options.half:
        from stopsign.export.fp16 import convert_to_fp16

        proto = convert_to_fp16(proto)
    if options.nms is not None:
        proto = append_efficient_nms(proto, OUTPUT_NAME, options.nms, spec.num_classes)
    stored = spec.replace(
        precision="fp16" if options.half else "fp32",
        output_layout="efficient_nms" if options.nms is not None else "yolov5_raw",
        onnx_sha256=None,  # a file cannot name its own hash; sidecars and caches name it
    )
    set_metadata(proto, {ONNX_METADATA_KEY: stored.to_json()})
    proto.producer_name = "stopsign.export"
    onnx.checker.check_model(proto, full_check=options.nms is None)
    return atomic_write_bytes(out, proto.SerializeToString())


def export_checkpoint(
    ckpt_dir: str | Path,
    out: str | Path,
    img: int | tuple[int, int] | None = None,
    batch: int = 1,
    dynamic: bool = False,
    half: bool = False,
    simplify: bool = True,
    nms: NmsOptions | None = None,
    opset: int = DEFAULT_OPSET,
    exporter: str = "torchscript",
) -> Path:
    """Load a checkpoint folder (``stopsign.train.checkpoint``) and export it at ``img`` pixels
    (None: the input size in its spec.json: the training size, or a Darknet cfg's width/height)."""
    checkpoint = load_checkpoint(ckpt_dir)
    if img is None:
        img = checkpoint.spec.input_size
    size = (img, img) if isinstance(img, int) else (int(img[0]), int(img[1]))
    spec = checkpoint.spec.replace(input_size=size)  # replace() re-validates: size vs strides
    return export_onnx(checkpoint.model, spec, out, batch, dynamic, half, simplify, nms, opset, exporter)


def set_metadata(proto: onnx.ModelProto, entries: dict[str, str]) -> None:
    """Set ``metadata_props`` entries, replacing existing ones with the same key."""
    kept = [p for p in proto.metadata_props if p.key not in entries]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    for key, value in entries.items():
        proto.metadata_props.append(onnx.StringStringEntryProto(key=key, value=value))


def _check_spec_matches(model: YoloModel, spec: ModelSpec) -> None:
    if spec.num_classes != model.nc:
        raise ExportError(f"spec names {spec.num_classes} classes but the model has nc={model.nc}")
    if tuple(spec.strides) != tuple(model.strides):
        raise ExportError(f"spec strides {spec.strides} differ from the model's {tuple(model.strides)}")


def _inference_copy(model: YoloModel) -> YoloModel:
    fused = copy.deepcopy(model).float().cpu().eval().fuse()
    fused.detect.export = True
    for parameter in fused.parameters():
        parameter.requires_grad_(False)
    return fused


def _torch_to_onnx(model: YoloModel, spec: ModelSpec, options: ExportOptions) -> onnx.ModelProto:
    fused = _inference_copy(model)
    height, width = spec.input_size
    example = torch.zeros(options.batch, 3, height, width)
    if options.exporter == "dynamo":
        return _export_dynamo(fused, example, options)
    buffer = io.BytesIO()
    dynamic_axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if options.dynamic else None
    with warnings.catch_warnings():
        # torch >= 2.9 warns that the TorchScript exporter is legacy; the choice is deliberate (module doc).
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx")
        warnings.filterwarnings("ignore", message=r".*legacy TorchScript-based ONNX export.*")
        torch.onnx.export(
            fused,
            (example,),
            buffer,
            dynamo=False,
            opset_version=options.opset,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes=dynamic_axes,
            do_constant_folding=True,
        )
    return onnx.load_from_string(buffer.getvalue())


def _export_dynamo(fused: YoloModel, example: torch.Tensor, options: ExportOptions) -> onnx.ModelProto:
    try:
        import onnxscript  # noqa: F401  # the dynamo exporter needs it; fail with a clear message
    except ImportError:
        raise ExportError("exporter='dynamo' needs onnxscript (pip install onnxscript)") from None
    dynamic_shapes = ({0: torch.export.Dim("batch", min=1, max=256)},) if options.dynamic else None
    program = torch.onnx.export(
        fused,
        (example,),
        dynamo=True,
        opset_version=max(options.opset, 18),  # the dynamo exporter emits opset 18 at the least
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        dynamic_shapes=dynamic_shapes,
        external_data=False,
        verbose=False,
    )
    if program is None:
        raise ExportError("torch.onnx.export(dynamo=True) returned no program")
    return program.model_proto
