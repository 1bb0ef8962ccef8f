"""FP32 ONNX -> FP16 ONNX with float32 input and output.

Conversion uses onnxruntime's float16 converter (``onnxruntime.transformers.float16``, shipped with
onnxruntime); ``keep_io_types`` puts one Cast after ``images`` and one before each output, so the
runtime feeds the same float32 buffer to either model. Everything between runs in float16, the
box decode included: keeping the decode in float32 (tried with the converter's node block list)
added 88 Cast nodes and did not reduce the box error on yolov5n at 256 px (0.22 px vs 0.08 px
max), because the error comes from the float16 convolutions, not from the decode arithmetic.
TensorRT's strongly typed mode (TensorRT 11) follows these types exactly.
"""

from __future__ import annotations

import onnx


def convert_to_fp16(proto: onnx.ModelProto) -> onnx.ModelProto:
    """Float16 weights and compute; graph inputs and outputs stay float32.

    Args:
        proto: a float32 model (as exported by :func:`stopsign.export.onnx_export.export_onnx`).
    """
    from onnxruntime.transformers.float16 import convert_float_to_float16

    converted = convert_float_to_float16(proto, keep_io_types=True)
    # The converter appends its boundary Cast nodes at the end of the node list; ONNX wants topological order.
    sort_topologically(converted.graph)
    onnx.checker.check_model(converted)
    return converted


def sort_topologically(graph: onnx.GraphProto) -> None:
    """Reorder ``graph.node`` in place so that every node comes after the producers of its inputs."""
    available = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    pending = list(graph.node)
    ordered: list[onnx.NodeProto] = []
    while pending:
        ready = [n for n in pending if all(name in available for name in n.input)]
        if not ready:
            stuck = ", ".join(n.name or n.op_type for n in pending[:5])
            raise ValueError(f"graph has a cycle or a dangling input; stuck at: {stuck}")
        ready_ids = {id(n) for n in ready}
        for node in ready:
            ordered.append(node)
            available.update(node.output)
        pending = [n for n in pending if id(n) not in ready_ids]
    copies = [onnx.NodeProto.FromString(n.SerializeToString()) for n in ordered]
    del graph.node[:]
    graph.node.extend(copies)
