"""Give an exported ONNX a dynamic batch axis without re-exporting it (``edge-export dynamic-batch``).

A model exported with a fixed batch of 1 (as the shipped ``stopsign.onnx`` and its INT8 Q/DQ file
were until this tool converted them) cannot run the whole frame and its tiles as one batch on TensorRT. Its graph fixes the batch in
three places only: the input and output shapes, and the detection head's ``Reshape`` targets
(``(1, 3, 5 + nc, H, W)`` and ``(1, N, 5 + nc)``). This rewrites those to a symbolic ``batch`` and
``-1``; weights, metadata (the ModelSpec) and every other node stay as they are. Anything it does
not understand (a ``Reshape`` whose target is computed, a ``Resize`` given output sizes) is an
error naming the node: re-export from the checkpoint with ``edge-export onnx --dynamic`` instead.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from stopsign.edge.model.artifacts import atomic_write_bytes
from stopsign.export.engine_plan import EngineBuildError

BATCH_AXIS = "batch"


def make_batch_dynamic(model: onnx.ModelProto, source: str = "model") -> onnx.ModelProto:
    """A copy of ``model`` with a symbolic batch axis (see the module docstring)."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    for value in [*graph.input, *graph.output]:
        dims = value.type.tensor_type.shape.dim
        if not dims:
            raise EngineBuildError(f"{source}: {value.name} has no shape")
        if dims[0].HasField("dim_param"):
            continue  # already symbolic
        if dims[0].dim_value != 1:
            raise EngineBuildError(f"{source}: {value.name} has a fixed batch of {dims[0].dim_value}, not 1")
        dims[0].Clear()
        dims[0].dim_param = BATCH_AXIS
    constants = {init.name: init for init in graph.initializer}
    node_constants = {
        node.output[0]: node for node in graph.node if node.op_type == "Constant" and node.output
    }
    for node in graph.node:
        if node.op_type == "Resize" and len(node.input) > 3 and node.input[3]:
            raise EngineBuildError(
                f"{source}: Resize node {node.name!r} takes output sizes, which fix the batch"
            )
        if node.op_type != "Reshape":
            continue
        target = node.input[1]
        if target in constants:
            shape = numpy_helper.to_array(constants[target])
            new = _batch_free(shape, node.name, source)
            constants[target].CopyFrom(numpy_helper.from_array(new, target))
        elif target in node_constants:
            attribute = next(a for a in node_constants[target].attribute if a.name == "value")
            shape = numpy_helper.to_array(attribute.t)
            attribute.t.CopyFrom(
                numpy_helper.from_array(_batch_free(shape, node.name, source), attribute.t.name)
            )
        else:
            raise EngineBuildError(
                f"{source}: Reshape node {node.name!r} computes its target shape; re-export with --dynamic"
            )
    for value in graph.value_info:  # stale shape annotations would contradict the new batch axis
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_param") and dims[0].dim_value == 1:
            dims[0].Clear()
            dims[0].dim_param = BATCH_AXIS
    onnx.checker.check_model(model)
    return model


def _batch_free(shape: np.ndarray, node: str, source: str) -> np.ndarray:
    """A Reshape target with its leading 1 (the batch) replaced by -1."""
    if shape.ndim != 1 or len(shape) < 2:
        raise EngineBuildError(f"{source}: Reshape node {node!r} has target {shape.tolist()}")
    if shape[0] == -1:
        return shape
    if shape[0] != 1 or (shape[1:] < 0).any() or (shape[1:] == 0).any():
        raise EngineBuildError(
            f"{source}: Reshape node {node!r} has target {shape.tolist()}, not (1, fixed sizes...)"
        )
    new = shape.copy()
    new[0] = -1
    return new


def convert_file(src: str | Path, out: str | Path) -> Path:
    """Read ``src``, write the dynamic-batch model to ``out`` (atomically)."""
    src = Path(src)
    try:
        model = onnx.load(str(src))
    except Exception as exc:  # OSError, protobuf's DecodeError: either way, not a model we can read
        raise EngineBuildError(f"{src}: cannot read it as ONNX ({exc})") from None
    return atomic_write_bytes(out, make_batch_dynamic(model, str(src)).SerializeToString())
