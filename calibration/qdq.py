"""``edge-calibrate qdq``: explicit Q/DQ INT8 ONNX with onnxruntime.quantization, built for TensorRT.

Choices, and why:

- ``QuantFormat.QDQ``, activations and weights ``QInt8`` with ``ActivationSymmetric`` and
  ``WeightSymmetric``, weights per output channel: TensorRT's explicit quantization accepts only
  symmetric signed INT8 (zero point 0); ONNX Runtime's default unsigned activations do not build.
- Only ``Conv`` is quantized by default (inputs and weights; ``OpTypesToExcludeOutputQuantization``
  keeps a Q/DQ pair off each Conv output). That is the placement TensorRT fuses best: Q/DQ at the
  input of every weighted layer, so Conv + SiLU runs as one INT8 kernel and MaxPool/Resize/Concat
  commute with the quantize nodes. ``op_types`` widens it. Bias stays float (``QuantizeBias``
  False): TensorRT folds it into the INT8 kernel itself.
- The Detect head convolutions and every node after them (reshape, sigmoid, box decode, the
  final concatenations) stay float: they are found structurally (nodes from which no further
  Conv is reachable), because the boxes there are in pixels and the scores are thresholded.
- Calibration streams: ONNX Runtime's calibrators keep every activation of the images they are
  given until ``collect_data`` returns (min-max too; entropy and percentile then histogram
  them), so the set is fed in chunks of ``chunk`` images through ``CalibStridedMinMax`` and
  ranges/histograms are merged between chunks. Peak memory is about ``chunk`` x activations of
  one image; ``max_images`` additionally caps the histogram methods.
"""

from __future__ import annotations

import fnmatch
import resource
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import CalibrationDataReader
from tqdm import tqdm

from stopsign.calibration.calibset import CalibrationSet
from stopsign.calibration.errors import CalibrationError
from stopsign.edge.model.artifacts import atomic_write_bytes
from stopsign.edge.model.onnx_meta import read_spec_from_onnx
from stopsign.edge.model.spec import ONNX_METADATA_KEY, ModelSpec, ModelSpecError

METHODS = ("minmax", "entropy", "percentile")
# Entropy/percentile histograms are built per chunk; more images add little once every stratum is in.
DEFAULT_MAX_IMAGES_HISTOGRAM = 256


@dataclass(frozen=True)
class QdqOptions:
    """Settings of :func:`quantize_qdq`.

    Attributes:
        method: "minmax", "entropy" or "percentile".
        keep_float: extra node names (or fnmatch patterns) to keep in float.
        keep_head_float: keep the Detect head convs and the decode tail in float.
        op_types: operator types to quantize.
        chunk: images per ``collect_data`` call (memory bound: chunk x one image's activations).
        batch: images per inference call; None = the model's static batch (1 when dynamic).
        max_images: cap on calibration images; None = all for minmax, 256 for the histogram methods.
        percentile: the percentile of |activation| kept by the percentile method.
    """

    method: str = "minmax"
    keep_float: tuple[str, ...] = ()
    keep_head_float: bool = True
    op_types: tuple[str, ...] = ("Conv",)
    chunk: int = 16
    batch: int | None = None
    max_images: int | None = None
    percentile: float = 99.999

    def validate(self) -> None:
        if self.method not in METHODS:
            raise CalibrationError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.chunk < 1 or (self.batch is not None and self.batch < 1):
            raise CalibrationError(f"chunk ({self.chunk}) and batch ({self.batch}) must be >= 1")
        if self.max_images is not None and self.max_images < 1:
            raise CalibrationError(f"max_images must be >= 1, got {self.max_images}")
        if not 0 < self.percentile <= 100:
            raise CalibrationError(f"percentile must be in (0, 100], got {self.percentile}")

    def image_cap(self) -> int | None:
        if self.max_images is not None:
            return self.max_images
        return None if self.method == "minmax" else DEFAULT_MAX_IMAGES_HISTOGRAM


@dataclass
class QdqResult:
    """What :func:`quantize_qdq` did: files, counts, time (s) and peak resident memory (MiB)."""

    out: Path
    method: str
    n_images: int
    chunk: int
    kept_float: list[str]
    quantized_nodes: int
    seconds: float
    peak_rss_mib: float
    notes: list[str] = field(default_factory=list)


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far, in MiB (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024


def head_and_tail_nodes(graph: onnx.GraphProto) -> list[str]:
    """Nodes from which no Conv is reachable downstream: the last Conv of each Detect level and the decode.

    Nodes are topologically ordered in a valid graph, so one backward pass settles reachability.
    """
    consumers: dict[str, list[int]] = {}
    for index, node in enumerate(graph.node):
        for name in node.input:
            consumers.setdefault(name, []).append(index)
    feeds_conv = [False] * len(graph.node)
    for index in range(len(graph.node) - 1, -1, -1):
        feeds_conv[index] = any(
            graph.node[child].op_type == "Conv" or feeds_conv[child]
            for output in graph.node[index].output
            for child in consumers.get(output, [])
        )
    return [node.name for index, node in enumerate(graph.node) if not feeds_conv[index]]


def resolve_keep_float(graph: onnx.GraphProto, patterns: tuple[str, ...]) -> list[str]:
    """Node names matching ``patterns`` (exact names or fnmatch globs); a pattern matching nothing is an error."""
    names = [node.name for node in graph.node]
    kept: list[str] = []
    for pattern in patterns:
        matched = [n for n in names if n == pattern or fnmatch.fnmatchcase(n, pattern)]
        if not matched:
            close = [n for n in names if pattern.strip("*/").split("/")[0] in n][:5]
            raise CalibrationError(
                f"--keep-float {pattern!r} matches no node of the model"
                + (f" (similar: {', '.join(close)})" if close else "")
            )
        kept.extend(m for m in matched if m not in kept)
    return kept


def load_model_and_spec(model_path: str | Path) -> tuple[onnx.ModelProto, ModelSpec]:
    """The ONNX model and its ModelSpec; a clear error when the spec is missing."""
    model_path = Path(model_path)
    try:
        spec = read_spec_from_onnx(model_path)
    except (ModelSpecError, FileNotFoundError) as exc:
        raise CalibrationError(str(exc)) from None
    if spec.precision == "int8":
        raise CalibrationError(
            f"{model_path}: is already INT8 (ModelSpec precision 'int8'); quantize the FP32 model"
        )
    if spec.output_layout != "yolov5_raw":
        raise CalibrationError(
            f"{model_path}: output layout {spec.output_layout!r}; quantize the raw-head export (without --nms)"
        )
    proto = onnx.load(str(model_path))
    for index, node in enumerate(proto.graph.node):  # nodes_to_exclude works by name
        if not node.name:
            node.name = f"node_{index}_{node.op_type}"
    return proto, spec


def quantize_qdq(
    model_path: str | Path, calib_dir: str | Path, out: str | Path, options: QdqOptions
) -> QdqResult:
    """Quantize ``model_path`` (FP32 ONNX with ModelSpec) to a Q/DQ INT8 ONNX at ``out``.

    The result carries the ModelSpec with precision "int8" and is checked to run in ONNX
    Runtime on CPU with the first calibration image.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    options.validate()
    start = time.perf_counter()
    proto, spec = load_model_and_spec(model_path)
    calib = CalibrationSet.load(calib_dir, spec, limit=options.image_cap())
    kept = resolve_keep_float(proto.graph, options.keep_float)
    if options.keep_head_float:
        kept = head_and_tail_nodes(proto.graph) + [
            k for k in kept if k not in head_and_tail_nodes(proto.graph)
        ]
    batch = _batch_size(proto, options.batch)
    chunk = _chunk_size(len(calib), options.chunk, batch)
    reader = StreamingReader(calib, proto.graph.input[0].name, batch)
    method = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }[options.method]
    extra = {
        "ActivationSymmetric": True,
        "WeightSymmetric": True,
        "CalibTensorRangeSymmetric": True,
        "QuantizeBias": False,
        "OpTypesToExcludeOutputQuantization": list(options.op_types),
        "CalibStridedMinMax": chunk // batch,  # in reader steps (batches)
        "CalibPercentile": options.percentile,
    }
    out = Path(out)
    with tempfile.TemporaryDirectory(prefix="edge-calibrate.") as tmp:
        source = Path(tmp) / "float.onnx"
        onnx.save(proto, str(source))
        target = Path(tmp) / "int8.onnx"
        quantize_static(
            str(source),
            str(target),
            reader,
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(options.op_types),
            per_channel=True,
            reduce_range=False,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=kept,
            calibrate_method=method,
            extra_options=extra,
        )
        reader.close()
        quantized = onnx.load(str(target))
    bypass_shared_qdq(quantized.graph, set(kept))
    _store_spec(quantized, spec)
    onnx.checker.check_model(quantized)
    atomic_write_bytes(out, quantized.SerializeToString())
    check_runs_on_cpu(out, calib.image(0))
    n_q = sum(1 for node in quantized.graph.node if node.op_type == "QuantizeLinear")
    return QdqResult(
        out=out,
        method=options.method,
        n_images=len(calib),
        chunk=chunk,
        kept_float=kept,
        quantized_nodes=n_q,
        seconds=time.perf_counter() - start,
        peak_rss_mib=peak_rss_mib(),
    )


def bypass_shared_qdq(graph: onnx.GraphProto, float_nodes: set[str]) -> int:
    """Feed ``float_nodes`` the float tensor where ONNX Runtime gave them a Q->DQ'd activation.

    A tensor with a quantized and a float consumer (the last backbone output feeds both the next
    INT8 Conv and a Detect head Conv) gets one Q/DQ pair shared by all consumers, which would
    round the head's input to INT8 too. Returns the number of inputs rewired.
    """
    producer = {out: node for node in graph.node for out in node.output}
    initializers = {i.name for i in graph.initializer}
    rewired = 0
    for node in graph.node:
        if node.name not in float_nodes:
            continue
        for index, name in enumerate(node.input):
            dq = producer.get(name)
            if dq is None or dq.op_type != "DequantizeLinear":
                continue
            q = producer.get(dq.input[0])
            if q is None or q.op_type != "QuantizeLinear" or q.input[0] in initializers:
                continue
            node.input[index] = q.input[0]
            rewired += 1
    return rewired


def check_runs_on_cpu(path: Path, example: np.ndarray) -> np.ndarray:
    """Run the model once in ONNX Runtime (CPU); returns its first output. Raises CalibrationError on failure."""
    import onnxruntime

    try:
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        output = session.run(None, {session.get_inputs()[0].name: example})[0]
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/RuntimeException types
        raise CalibrationError(f"{path}: the Q/DQ model does not run in ONNX Runtime CPU ({exc})") from None
    if not np.all(np.isfinite(output)):
        raise CalibrationError(f"{path}: the Q/DQ model produced non-finite outputs")
    return np.asarray(output)


def _batch_size(proto: onnx.ModelProto, asked: int | None) -> int:
    """The batch to feed: the graph's static batch, or ``asked`` (default 1) when the batch axis is dynamic."""
    dim = proto.graph.input[0].type.tensor_type.shape.dim[0]
    static = dim.dim_value if dim.HasField("dim_value") and dim.dim_value > 0 else None
    if static is not None and asked is not None and asked != static:
        raise CalibrationError(f"--batch {asked}: the model's input has a fixed batch of {static}")
    return static or asked or 1


def _chunk_size(n_images: int, chunk: int, batch: int) -> int:
    """Largest multiple of ``batch`` <= ``chunk`` that divides ``n_images`` (ORT needs an even split)."""
    if n_images % batch:
        raise CalibrationError(f"{n_images} calibration images do not split into batches of {batch}")
    steps = n_images // batch
    for per_chunk in range(max(1, min(chunk // batch, steps)), 0, -1):
        if steps % per_chunk == 0:
            return per_chunk * batch
    return batch


def _store_spec(proto: onnx.ModelProto, spec: ModelSpec) -> None:
    stored = spec.replace(precision="int8", onnx_sha256=None)
    kept = [p for p in proto.metadata_props if p.key != ONNX_METADATA_KEY]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    proto.metadata_props.append(onnx.StringStringEntryProto(key=ONNX_METADATA_KEY, value=stored.to_json()))


class StreamingReader(CalibrationDataReader):
    """``CalibrationDataReader`` that decodes one batch per ``get_next`` call (nothing preloaded).

    ``set_range`` (called by ONNX Runtime for ``CalibStridedMinMax``) restricts it to a chunk of
    reader steps; a progress bar counts images over the whole set.
    """

    def __init__(self, calib: CalibrationSet, input_name: str, batch: int) -> None:
        self.calib = calib
        self.input_name = input_name
        self.batch = batch
        self._iter = iter(())  # type: ignore[var-annotated]
        self._progress = tqdm(total=len(calib), desc="calibrate", unit="img")
        self.set_range(0, len(self))

    def __len__(self) -> int:
        return len(self.calib) // self.batch

    def set_range(self, start_index: int, end_index: int) -> None:
        self._iter = self.calib.batches(self.batch, start_index * self.batch, end_index * self.batch)

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._iter, None)
        if batch is None:
            return None
        self._progress.update(len(batch))
        return {self.input_name: batch}

    def close(self) -> None:
        self._progress.close()
