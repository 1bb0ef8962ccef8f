"""The few CUDA calls the TensorRT backend needs, behind one tiny adapter: pycuda or cuda-python.

JetPack ships pycuda-free images and NVIDIA now recommends cuda-python; desktops often have
pycuda. Both expose the same operations here: pinned host buffers, device buffers, one stream,
async copies both ways, a stream synchronise, and capture of what is enqueued on the stream into a
CUDA graph that is then replayed with one launch. Nothing is imported until :func:`open_cuda`.

Pointers are plain ``int`` device addresses (what TensorRT's ``set_tensor_address`` takes).
"""

from __future__ import annotations

import ctypes
import importlib
from typing import Any, Protocol

import numpy as np


class CudaError(RuntimeError):
    """No usable CUDA binding, or a CUDA call failed; the message names the call."""


class CudaMemory(Protocol):
    name: str

    def pinned(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray: ...
    def device(self, nbytes: int) -> int: ...
    def to_device(self, device_ptr: int, host: np.ndarray) -> None: ...
    def to_host(self, host: np.ndarray, device_ptr: int) -> None: ...
    def synchronize(self) -> None: ...
    @property
    def stream_handle(self) -> int: ...
    def begin_capture(self) -> None: ...
    def end_capture(self) -> Any: ...
    def launch(self, graph: Any) -> None: ...
    def free(self) -> None: ...


class _CudaPython:
    """cuda-python (``cuda.bindings.runtime``, or ``cuda.cudart`` before 12.6)."""

    name = "cuda-python"

    def __init__(self) -> None:
        try:
            self._rt: Any = importlib.import_module("cuda.bindings.runtime")
        except ImportError:  # cuda-python before 12.6
            self._rt = importlib.import_module("cuda.cudart")
        self._stream = self._call("cudaStreamCreate")
        self._device: list[int] = []
        self._host: list[int] = []
        self._graphs: list[tuple[Any, Any]] = []

    def _call(self, name: str, *args: Any) -> Any:
        result = getattr(self._rt, name)(*args)
        error, values = result[0], result[1:]
        if int(error) != 0:
            raise CudaError(f"{name} failed: {error}")
        return values[0] if len(values) == 1 else values

    def pinned(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        pointer = self._call("cudaMallocHost", nbytes)
        self._host.append(pointer)
        buffer = np.ctypeslib.as_array((ctypes.c_byte * nbytes).from_address(int(pointer)))
        return buffer.view(dtype).reshape(shape)

    def device(self, nbytes: int) -> int:
        pointer = int(self._call("cudaMalloc", nbytes))
        self._device.append(pointer)
        return pointer

    def to_device(self, device_ptr: int, host: np.ndarray) -> None:
        kind = self._rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._call("cudaMemcpyAsync", device_ptr, host.ctypes.data, host.nbytes, kind, self._stream)

    def to_host(self, host: np.ndarray, device_ptr: int) -> None:
        kind = self._rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._call("cudaMemcpyAsync", host.ctypes.data, device_ptr, host.nbytes, kind, self._stream)

    def synchronize(self) -> None:
        self._call("cudaStreamSynchronize", self._stream)

    @property
    def stream_handle(self) -> int:
        return int(self._stream)

    def begin_capture(self) -> None:
        # Global mode: an unsafe CUDA call from another thread during capture is an error, not a bad graph.
        mode = self._rt.cudaStreamCaptureMode.cudaStreamCaptureModeGlobal
        self._call("cudaStreamBeginCapture", self._stream, mode)

    def end_capture(self) -> Any:
        """End the capture; the instantiated executable graph (replay it with :meth:`launch`)."""
        graph = self._call("cudaStreamEndCapture", self._stream)
        executable = self._call("cudaGraphInstantiate", graph, 0)
        self._graphs.append((graph, executable))
        return executable

    def launch(self, graph: Any) -> None:
        self._call("cudaGraphLaunch", graph, self._stream)

    def free(self) -> None:
        for graph, executable in self._graphs:
            self._rt.cudaGraphExecDestroy(executable)
            self._rt.cudaGraphDestroy(graph)
        self._graphs = []
        for pointer in self._device:
            self._rt.cudaFree(pointer)
        for pointer in self._host:
            self._rt.cudaFreeHost(pointer)
        self._device, self._host = [], []
        if self._stream is not None:  # free() may be called twice (close() after an error)
            self._rt.cudaStreamDestroy(self._stream)
            self._stream = None


class _PyCuda:
    """pycuda (JetPack's and many desktops' binding); it makes its own context on the first GPU."""

    name = "pycuda"

    def __init__(self) -> None:
        import pycuda.autoinit  # noqa: F401 - creates the context on the first GPU
        import pycuda.driver as driver

        self._driver = driver
        self._stream = driver.Stream()
        self._keep: list[Any] = []

    def pinned(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        return self._driver.pagelocked_empty(shape, dtype)

    def device(self, nbytes: int) -> int:
        allocation = self._driver.mem_alloc(nbytes)
        self._keep.append(allocation)
        return int(allocation)

    def to_device(self, device_ptr: int, host: np.ndarray) -> None:
        self._driver.memcpy_htod_async(device_ptr, host, self._stream)

    def to_host(self, host: np.ndarray, device_ptr: int) -> None:
        self._driver.memcpy_dtoh_async(host, device_ptr, self._stream)

    def synchronize(self) -> None:
        self._stream.synchronize()

    @property
    def stream_handle(self) -> int:
        return int(self._stream.handle)

    # pycuda's graph API differs between releases and cannot be tested here: graphs need cuda-python.
    def begin_capture(self) -> None:
        raise CudaError("CUDA graph capture is implemented for cuda-python only; use it or turn graphs off")

    def end_capture(self) -> Any:
        raise CudaError("CUDA graph capture is implemented for cuda-python only")

    def launch(self, graph: Any) -> None:
        raise CudaError("CUDA graph capture is implemented for cuda-python only")

    def free(self) -> None:
        self._keep = []


def open_cuda(prefer: str = "auto") -> CudaMemory:
    """pycuda when installed (``prefer="auto"``), else cuda-python; a clear error when neither works."""
    order = {"auto": (_PyCuda, _CudaPython), "pycuda": (_PyCuda,), "cuda-python": (_CudaPython,)}[prefer]
    errors = []
    for cls in order:
        try:
            return cls()
        except ImportError as exc:
            errors.append(f"{cls.name}: {exc}")
        except Exception as exc:  # driver errors come as each binding's own exception type
            errors.append(f"{cls.name}: {exc}")
    raise CudaError("no usable CUDA binding (" + "; ".join(errors) + "); install cuda-python (pip) or pycuda")
