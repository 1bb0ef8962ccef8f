"""TensorRT backend (written against the TensorRT 10.x and 11.x Python APIs; name-based I/O only).

Loading first checks the engine's sidecar (``<engine>.json``: TensorRT version, GPU compute
capability, SHA-256) in plain Python, so a stale engine is a clear error with the rebuild command,
never a crash inside TensorRT. Buffers are allocated once, by tensor name
(``num_io_tensors``, ``get_tensor_name``, ``get_tensor_mode``, ``get_tensor_shape``), host buffers
pinned, one CUDA stream, async copies, ``set_tensor_address`` + ``execute_async_v3`` (CUDA-graph capture of the enqueue is not done yet).
Engines with EfficientNMS_TRT outputs
(``num_dets``, ``det_boxes``, ``det_scores``, ``det_classes``) are returned in a raw-like layout
(see :meth:`TensorRTBackend.infer`) so the host decode finds the boxes already suppressed.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

from stopsign.edge.backends.base import Backend, BackendError, BackendOptions
from stopsign.edge.backends.cuda_memory import CudaError, CudaMemory, open_cuda
from stopsign.edge.engine_sidecar import EngineSidecarError, check_engine_sidecar
from stopsign.edge.spec import ModelSpec

NMS_OUTPUTS = ("num_dets", "det_boxes", "det_scores", "det_classes")


def tensorrt_runtime_available() -> bool:
    """True only for the real runtime: tensorrt-stubs installs an importable but empty package."""
    if importlib.util.find_spec("tensorrt") is None:
        return False
    import tensorrt

    return hasattr(tensorrt, "Runtime")


class TensorRTBackend(Backend):
    name = "tensorrt"

    def __init__(self, cuda_binding: str = "auto") -> None:
        self.cuda_binding = cuda_binding
        self._cuda: CudaMemory | None = None
        self._engine: Any = None
        self._context: Any = None
        self._host: dict[str, np.ndarray] = {}
        self._device: dict[str, int] = {}
        self._input = ""
        self._outputs: list[str] = []
        self.spec: ModelSpec | None = None

    @classmethod
    def is_available(cls) -> bool:
        return tensorrt_runtime_available()

    def load(self, model_path: str | Path, spec: ModelSpec | None, options: BackendOptions) -> ModelSpec:
        import tensorrt as trt

        from stopsign.edge.gpu_info import gpu_info

        path = Path(model_path)
        try:
            sidecar = check_engine_sidecar(path, trt.__version__, gpu_info().compute_capability)
        except EngineSidecarError as exc:
            raise BackendError(str(exc)) from None
        try:
            self._cuda = open_cuda(self.cuda_binding)
        except CudaError as exc:
            raise BackendError(f"tensorrt backend: {exc}") from None
        logger = trt.Logger(trt.Logger.WARNING)
        runtime = trt.Runtime(logger)
        self._engine = runtime.deserialize_cuda_engine(path.read_bytes())
        if self._engine is None:
            raise BackendError(f"{path}: TensorRT could not deserialise the engine (see the log above)")
        self._context = self._engine.create_execution_context()
        self.spec = spec or sidecar.model_spec
        for index in range(self._engine.num_io_tensors):
            name = self._engine.get_tensor_name(index)
            shape = tuple(self._engine.get_tensor_shape(name))
            if name == "images" or self._engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                h, w = self.spec.input_size
                shape = (1, 3, h, w) if any(d < 0 for d in shape) else shape
                self._context.set_input_shape(name, shape)
                self._input = name
            else:
                shape = tuple(self._context.get_tensor_shape(name))
                self._outputs.append(name)
            dtype = np.dtype(trt.nptype(self._engine.get_tensor_dtype(name)))
            self._host[name] = self._cuda.pinned(shape, dtype)
            self._device[name] = self._cuda.device(self._host[name].nbytes)
            self._context.set_tensor_address(name, self._device[name])
        if not self._input:
            raise BackendError(f"{path}: the engine has no input tensor")
        return self.spec

    def _enqueue(self) -> None:
        assert self._cuda is not None
        if not self._context.execute_async_v3(self._cuda.stream_handle):
            raise BackendError("tensorrt backend: execute_async_v3 failed (see the TensorRT log)")

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Network input -> (1, N, 5 + nc) raw head; for EfficientNMS engines, the kept boxes as
        rows (cx, cy, w, h, 1.0, one-hot score) so the shared decode passes them through unchanged."""
        if self._cuda is None:
            raise BackendError("tensorrt backend: infer() before load()")
        cuda = self._cuda
        host_input = self._host[self._input]
        np.copyto(host_input, batch, casting="same_kind")
        cuda.to_device(self._device[self._input], host_input)
        self._enqueue()
        for name in self._outputs:
            cuda.to_host(self._host[name], self._device[name])
        cuda.synchronize()
        if set(NMS_OUTPUTS) <= set(self._outputs):
            return self._nms_rows()
        return self._host[self._outputs[0]].astype(np.float32, copy=True)

    def _nms_rows(self) -> np.ndarray:
        assert self.spec is not None
        count = int(self._host["num_dets"].reshape(-1)[0])
        boxes = self._host["det_boxes"].reshape(-1, 4)[:count].astype(np.float32)
        scores = self._host["det_scores"].reshape(-1)[:count].astype(np.float32)
        classes = self._host["det_classes"].reshape(-1)[:count].astype(np.int64)
        rows = np.zeros((count, 5 + self.spec.num_classes), np.float32)
        rows[:, 0] = (boxes[:, 0] + boxes[:, 2]) / 2
        rows[:, 1] = (boxes[:, 1] + boxes[:, 3]) / 2
        rows[:, 2] = boxes[:, 2] - boxes[:, 0]
        rows[:, 3] = boxes[:, 3] - boxes[:, 1]
        rows[:, 4] = 1.0
        rows[np.arange(count), 5 + classes] = scores
        return rows[None]

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "cuda": self._cuda.name if self._cuda else None}

    def close(self) -> None:
        if self._cuda is not None:
            self._cuda.free()
        self._context = self._engine = self._cuda = None
