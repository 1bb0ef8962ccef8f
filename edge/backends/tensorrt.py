"""TensorRT backend, written against the TensorRT 10.x and 11.x Python APIs (name-based I/O only).

Loading first checks the engine's sidecar (``<engine>.json``: TensorRT version, GPU compute
capability, SHA-256) in plain Python (:func:`stopsign.edge.model.engine_sidecar.check_engine_sidecar`),
so a stale engine is a clear error with the rebuild command, never a crash inside TensorRT.

Buffers are allocated once, by tensor name (``num_io_tensors``, ``get_tensor_name``,
``get_tensor_mode``, ``get_tensor_shape``, ``set_tensor_address``): pinned host memory, device
memory and one CUDA stream through :mod:`stopsign.edge.backends.cuda_memory` (pycuda or
cuda-python). A frame is: copy into the pinned input, async host-to-device copy,
``execute_async_v3``, async device-to-host copies, one stream synchronise. With ``cuda_graph``
(cuda-python only) the copies and the enqueue are captured once into a CUDA graph and each frame
is one graph launch.

Two engine kinds:

* raw head (ModelSpec ``output_layout="yolov5_raw"``): ``infer`` returns (1, N, 5 + nc) float32,
  decoded and suppressed on the host like every other backend;
* EfficientNMS_TRT (outputs ``num_dets``, ``det_boxes``, ``det_scores``, ``det_classes``): the
  engine already suppressed the boxes, so ``output_suppressed`` is True and ``infer`` returns the
  kept boxes as (1, K, 5 + nc) rows ``cx, cy, w, h, 1.0, one-hot score``. ``decode_yolov5`` turns
  these into the same Detections; a caller that sees ``output_suppressed`` may skip host NMS.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from stopsign.edge.backends.base import Backend, BackendError, BackendOptions, reject_properties
from stopsign.edge.backends.cuda_memory import CudaError, CudaMemory, open_cuda
from stopsign.edge.model.engine_sidecar import EngineSidecarError, check_engine_sidecar
from stopsign.edge.model.spec import ModelSpec

if TYPE_CHECKING:
    import tensorrt as trt

NMS_OUTPUTS = ("num_dets", "det_boxes", "det_scores", "det_classes")
ENGINE_SUFFIXES = (".engine", ".plan")


def tensorrt_runtime_available() -> bool:
    """True only for the real runtime: tensorrt-stubs installs an importable but empty package."""
    if importlib.util.find_spec("tensorrt") is None:
        return False
    import tensorrt

    return hasattr(tensorrt, "Runtime")


def engine_for(model_path: str | Path) -> Path:
    """The engine file to load: ``model_path`` itself, or ``M.engine`` beside a given ``M.onnx``."""
    path = Path(model_path)
    if path.suffix.lower() == ".onnx":
        return path.with_suffix(".engine")
    return path


def nms_rows(
    num_dets: np.ndarray, boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, num_classes: int
) -> np.ndarray:
    """EfficientNMS_TRT outputs of one image -> (1, K, 5 + nc) float32 rows decode_yolov5 reads.

    ``boxes`` are xyxy in network-input pixels (the plugin's ``box_coding=0``); each row gets
    objectness 1 and the score at its class, so score = obj x class prob is the plugin's score.
    """
    count = int(np.asarray(num_dets).reshape(-1)[0])
    xyxy = np.asarray(boxes).reshape(-1, 4)[:count].astype(np.float32)
    rows = np.zeros((count, 5 + num_classes), np.float32)
    rows[:, 0] = (xyxy[:, 0] + xyxy[:, 2]) / 2
    rows[:, 1] = (xyxy[:, 1] + xyxy[:, 3]) / 2
    rows[:, 2] = xyxy[:, 2] - xyxy[:, 0]
    rows[:, 3] = xyxy[:, 3] - xyxy[:, 1]
    rows[:, 4] = 1.0
    class_ids = np.asarray(classes).reshape(-1)[:count].astype(np.int64)
    rows[np.arange(count), 5 + class_ids] = np.asarray(scores).reshape(-1)[:count]
    return rows[None]


def stack_rows(per_image: list[np.ndarray], width: int) -> np.ndarray:
    """Kept rows of each image (k_i, 5 + nc) -> (B, max k_i, 5 + nc), padded with all-zero rows
    (score 0: below any confidence floor, so decode drops them)."""
    longest = max((len(rows) for rows in per_image), default=0)
    out = np.zeros((len(per_image), longest, width), np.float32)
    for i, rows in enumerate(per_image):
        out[i, : len(rows)] = rows
    return out


class TensorRTBackend(Backend):
    """A serialized engine (``.engine``/``.plan``, or the ``.engine`` beside a given ``.onnx``)."""

    name = "tensorrt"

    def __init__(self, cuda_binding: str = "auto", cuda_graph: bool = False) -> None:
        """``cuda_binding``: "auto" (pycuda, else cuda-python), "pycuda" or "cuda-python".
        ``cuda_graph``: capture copies + enqueue into a CUDA graph (needs cuda-python)."""
        self.cuda_binding = "cuda-python" if cuda_graph and cuda_binding == "auto" else cuda_binding
        self.use_cuda_graph = cuda_graph
        self._cuda: CudaMemory | None = None
        self._engine: trt.ICudaEngine | None = None
        self._context: trt.IExecutionContext | None = None
        self._graph: Any = None
        self._host: dict[str, np.ndarray] = {}
        self._device: dict[str, int] = {}
        self._input = ""
        self._outputs: list[str] = []
        self.engine_path: Path | None = None
        self.batch_range: tuple[int, int] = (1, 1)  # smallest and largest batch the engine takes
        self._batch = 0  # images per call the context is set up for
        self.tensorrt_version = ""
        self.spec: ModelSpec | None = None

    @classmethod
    def is_available(cls) -> bool:
        return tensorrt_runtime_available()

    def load(self, model_path: str | Path, spec: ModelSpec | None, options: BackendOptions) -> ModelSpec:
        reject_properties("tensorrt", options)
        import tensorrt as trt

        from stopsign.edge.model.gpu_info import gpu_info

        path = engine_for(model_path)
        try:
            info = gpu_info()
        except RuntimeError as exc:
            raise BackendError(f"{path}: the tensorrt backend needs a CUDA GPU ({exc})") from None
        try:
            sidecar = check_engine_sidecar(path, trt.__version__, info.compute_capability)
        except EngineSidecarError as exc:
            raise BackendError(str(exc)) from None
        try:
            self._cuda = open_cuda(self.cuda_binding)
        except CudaError as exc:
            raise BackendError(f"tensorrt backend: {exc}") from None
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        engine = runtime.deserialize_cuda_engine(path.read_bytes())
        if engine is None:
            raise BackendError(f"{path}: TensorRT could not deserialise the engine (see the log above)")
        context = engine.create_execution_context()
        self._engine, self._context = engine, context
        self.engine_path, self.tensorrt_version = path, trt.__version__
        self.spec = spec or sidecar.model_spec
        self._allocate(trt, engine, context, path)
        self.output_suppressed = set(NMS_OUTPUTS) <= set(self._outputs)
        if not self.output_suppressed and len(self._outputs) != 1:
            raise BackendError(f"{path}: outputs {self._outputs} are neither one raw head nor {NMS_OUTPUTS}")
        self._enqueue()  # the first enqueue does lazy setup that must not land in a graph
        self._cuda.synchronize()
        if self.use_cuda_graph:
            self._capture_graph()
        return self.spec

    def _allocate(
        self, trt: Any, engine: trt.ICudaEngine, context: trt.IExecutionContext, path: Path
    ) -> None:
        """Pinned host + device buffer per I/O tensor, bound to the context by name, once.

        An engine built with a batch profile (``edge-export engine --batch N``) gets buffers for
        the profile's largest batch; :meth:`infer` sets the input shape of each call within it.
        """
        assert self._cuda is not None and self.spec is not None
        for index in range(engine.num_io_tensors):
            name = engine.get_tensor_name(index)
            if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                if self._input:
                    raise BackendError(f"{path}: the engine has more than one input ({self._input}, {name})")
                self._input = name
            else:
                self._outputs.append(name)
        if not self._input:
            raise BackendError(f"{path}: the engine has no input tensor")
        dims = engine.get_tensor_shape(self._input)
        shape = tuple(dims[i] for i in range(len(dims)))
        if any(d < 0 for d in shape):  # dynamic batch: buffers for the profile's largest batch
            low, _, high = engine.get_tensor_profile_shape(self._input, 0)
            self.batch_range = (int(low[0]), int(high[0]))
            shape = (self.batch_range[1], 3, *self.spec.input_size)
        else:
            self.batch_range = (shape[0], shape[0])
            self.fixed_batch = shape[0]  # larger batches run in chunks; edge-bench measures none
        if not context.set_input_shape(self._input, shape):
            raise BackendError(f"{path}: input {self._input} does not accept shape {shape}")
        for name in [self._input, *self._outputs]:
            dims = context.get_tensor_shape(name)  # outputs are known once the input shape is set
            full = tuple(dims[i] for i in range(len(dims)))
            dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
            self._host[name] = self._cuda.pinned(full, dtype)
            self._device[name] = self._cuda.device(max(self._host[name].nbytes, 1))
            context.set_tensor_address(name, self._device[name])
        self._batch = shape[0]
        self._set_batch(self.batch_range[0])  # one image per call unless infer() gets more

    def _set_batch(self, size: int) -> None:
        """Run the next calls on ``size`` images: the input shape of the context and the host views."""
        assert self._context is not None
        if size == self._batch:
            return
        shape = (size, *self._host[self._input].shape[1:])
        if not self._context.set_input_shape(self._input, shape):
            raise BackendError(f"tensorrt backend: the engine does not accept a batch of {size}")
        self._batch = size
        self._graph = None  # a captured graph holds the old shapes (graphs are for the loaded batch)

    def _view(self, name: str) -> np.ndarray:
        """The host buffer of ``name`` for the current batch (a leading slice: contiguous)."""
        return self._host[name][: self._batch]

    def _enqueue(self) -> None:
        assert self._cuda is not None and self._context is not None
        if not self._context.execute_async_v3(self._cuda.stream_handle):
            raise BackendError("tensorrt backend: execute_async_v3 failed (see the TensorRT log)")

    def _copy_in_run_copy_out(self) -> None:
        assert self._cuda is not None
        self._cuda.to_device(self._device[self._input], self._view(self._input))
        self._enqueue()
        for name in self._outputs:
            self._cuda.to_host(self._view(name), self._device[name])

    def _capture_graph(self) -> None:
        assert self._cuda is not None
        try:
            self._cuda.begin_capture()
            self._copy_in_run_copy_out()
            self._graph = self._cuda.end_capture()
        except CudaError as exc:
            raise BackendError(f"tensorrt backend: CUDA graph capture failed ({exc})") from None

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self._view(self._input).shape) if self._input else ()

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """(B, 3, H, W) float32 -> (B, N, 5 + nc) float32 raw head, or (B, K, 5 + nc) kept rows for
        EfficientNMS engines (see the module docstring). More images than the engine's batch profile
        takes (``edge-export engine --batch N`` sets it) run in chunks."""
        if self._cuda is None or self.spec is None:
            raise BackendError("tensorrt backend: infer() before load()")
        low, high = self.batch_range
        expected = self._host[self._input].shape[1:]
        if batch.ndim != 4 or batch.shape[1:] != expected or len(batch) < low:
            raise BackendError(
                f"tensorrt backend: input shape {batch.shape}, engine takes (B, {', '.join(map(str, expected))}) "
                f"with B in [{low}, {high}]"
            )
        if len(batch) > high:  # more images than the engine's profile: in chunks (one call each)
            parts = [self.infer(batch[i : i + high]) for i in range(0, len(batch), high)]
            if self.output_suppressed:
                return stack_rows([rows for part in parts for rows in part], 5 + self.spec.num_classes)
            return np.concatenate(parts)
        self._set_batch(len(batch))
        np.copyto(self._view(self._input), batch, casting="same_kind")  # float32 -> the engine's dtype
        if self._graph is not None:
            self._cuda.launch(self._graph)
        else:
            self._copy_in_run_copy_out()
        self._cuda.synchronize()
        if self.output_suppressed:
            per_image = [
                nms_rows(
                    self._view("num_dets")[i],
                    self._view("det_boxes")[i],
                    self._view("det_scores")[i],
                    self._view("det_classes")[i],
                    self.spec.num_classes,
                )[0]
                for i in range(self._batch)
            ]
            return stack_rows(per_image, 5 + self.spec.num_classes)
        return self._view(self._outputs[0]).astype(np.float32, copy=True)

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "engine": str(self.engine_path),
            "tensorrt": self.tensorrt_version,
            "cuda": self._cuda.name if self._cuda else None,
            "cuda_graph": self._graph is not None,
            "output_suppressed": self.output_suppressed,
            "batch_range": list(self.batch_range),
        }

    def close(self) -> None:
        # The context and engine go before the memory they point into.
        self._graph = None
        self._context = self._engine = None
        if self._cuda is not None:
            self._cuda.free()
        self._cuda = None
        self._host, self._device = {}, {}
