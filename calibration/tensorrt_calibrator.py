"""Legacy implicit INT8 calibration for TensorRT 8.6 - 10.x (JetPack 5 / 6).

Written against the TensorRT 8.6 and 10.x Python API: ``IInt8EntropyCalibrator2`` and
``IInt8MinMaxCalibrator`` (deprecated in 10.1, removed in 11 - use ``edge-calibrate qdq`` and a
strongly typed network there). Checked with mypy against ``tensorrt-stubs`` 10.x.

The calibrators are fed by the same :class:`CalibrationSet` as the Q/DQ path, so both see the
runtime's exact letterboxed input. Device memory comes from cuda-python or pycuda behind
:class:`DeviceBuffer`. The cache is read when present and valid for this model (see
:mod:`stopsign.calibration.cache`) and written after calibration with its sidecar.

``tensorrt`` and the CUDA bindings are imported inside the functions that need them only.
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from stopsign.calibration.cache import CacheBinding, load_cache, write_cache
from stopsign.calibration.calibset import CalibrationSet
from stopsign.calibration.errors import CalibrationError
from stopsign.calibration.qdq import load_model_and_spec
from stopsign.edge.model.artifacts import sha256_file

if TYPE_CHECKING:
    import tensorrt as trt

SUPPORTED = "TensorRT 8.6 - 10.x"


def tensorrt_import_error() -> str | None:
    """None when ``import tensorrt`` works here, else the reason (for skips and error messages)."""
    try:
        module = importlib.import_module("tensorrt")
    except ImportError as exc:
        return f"tensorrt does not import ({exc})"
    # tensorrt-stubs installs a bare tensorrt/ folder (only .pyi), which imports as an empty namespace package.
    if not hasattr(module, "Builder"):
        return f"tensorrt at {list(getattr(module, '__path__', []))} is only type stubs, not the TensorRT runtime"
    return None


class DeviceBuffer(Protocol):
    """A device allocation of ``nbytes``: ``ptr`` is its address; ``upload`` copies a host array in."""

    ptr: int
    nbytes: int

    def upload(self, host: np.ndarray) -> None: ...

    def free(self) -> None: ...


class _CudaPythonBuffer:
    def __init__(self, nbytes: int) -> None:
        try:
            from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
        except ImportError:
            from cuda import cudart  # older cuda-python
        self._cudart = cudart
        err, ptr = cudart.cudaMalloc(nbytes)
        _check_cuda(err, "cudaMalloc")
        self.ptr = int(ptr)
        self.nbytes = nbytes

    def upload(self, host: np.ndarray) -> None:
        kind = self._cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        (err,) = self._cudart.cudaMemcpy(self.ptr, host.ctypes.data, host.nbytes, kind)
        _check_cuda(err, "cudaMemcpy")

    def free(self) -> None:
        (err,) = self._cudart.cudaFree(self.ptr)
        _check_cuda(err, "cudaFree")


class _PyCudaBuffer:
    def __init__(self, nbytes: int) -> None:
        import pycuda.autoinit  # noqa: F401  # creates the CUDA context pycuda needs
        import pycuda.driver as driver

        self._driver = driver
        self._allocation = driver.mem_alloc(nbytes)
        self.ptr = int(self._allocation)
        self.nbytes = nbytes

    def upload(self, host: np.ndarray) -> None:
        self._driver.memcpy_htod(self._allocation, host)

    def free(self) -> None:
        self._allocation.free()


def _check_cuda(err: Any, call: str) -> None:
    if int(err) != 0:
        raise CalibrationError(f"{call} failed with CUDA error {err}")


def allocate_device(nbytes: int) -> DeviceBuffer:
    """Device memory from cuda-python, else pycuda; a clear error when neither imports."""
    reasons = []
    for factory, name in ((_CudaPythonBuffer, "cuda-python"), (_PyCudaBuffer, "pycuda")):
        try:
            return factory(nbytes)
        except ImportError as exc:
            reasons.append(f"{name}: {exc}")
    raise CalibrationError(
        f"no CUDA Python binding for calibration buffers ({'; '.join(reasons)}); pip install cuda-python"
    )


class BatchFeeder:
    """Walks a calibration set in full batches and uploads each to one reused device buffer.

    Plain Python: TensorRT sees it through the calibrator classes made by :func:`make_calibrator`.
    A last partial batch is dropped (TensorRT wants exactly ``batch`` images per call).
    """

    def __init__(self, calib: CalibrationSet, batch: int, device: DeviceBuffer | None = None) -> None:
        if batch < 1 or len(calib) < batch:
            raise CalibrationError(
                f"batch {batch} needs at least {batch} calibration images, have {len(calib)}"
            )
        self.calib = calib
        self.batch = batch
        height, width = calib.spec.input_size
        self.nbytes = batch * 3 * height * width * 4
        self.device = device
        self.n_batches = len(calib) // batch
        self.fed = 0

    def next_pointers(self, names: list[str]) -> list[int]:
        """Device pointers for the next batch (one input), or [] when the set is exhausted."""
        if len(names) != 1:
            raise CalibrationError(f"the calibrator feeds one input, TensorRT asked for {names}")
        if self.fed >= self.n_batches:
            return []
        first = self.fed * self.batch
        host = np.ascontiguousarray(next(self.calib.batches(self.batch, first, first + self.batch)))
        if self.device is None:
            self.device = allocate_device(self.nbytes)
        self.device.upload(host)
        self.fed += 1
        return [self.device.ptr]

    def close(self) -> None:
        if self.device is not None:
            self.device.free()
            self.device = None


class _CalibratorLogic:
    """The calibrator methods shared by both TensorRT base classes (cache via the sidecar check)."""

    feeder: BatchFeeder
    cache_path: Path | None
    binding: CacheBinding

    def _setup(self, feeder: BatchFeeder, cache_path: Path | None, binding: CacheBinding) -> None:
        self.feeder = feeder
        self.cache_path = cache_path
        self.binding = binding

    def get_batch_size(self) -> int:
        return self.feeder.batch

    def get_batch(self, names: list[str]) -> list[int]:
        return self.feeder.next_pointers(names)

    def read_calibration_cache(self) -> bytes | None:
        # TensorRT's Python API takes None for "no cache, calibrate"; the stubs only say Buffer.
        return load_cache(self.cache_path, self.binding)

    def write_calibration_cache(self, cache: Any) -> None:
        if self.cache_path is not None:
            write_cache(self.cache_path, bytes(cache), self.binding)


def make_calibrator(
    algorithm: str,
    model_path: str | Path,
    calib_dir: str | Path,
    cache_path: str | Path | None = None,
    batch: int = 1,
    limit: int | None = None,
) -> trt.IInt8Calibrator:
    """An ``IInt8EntropyCalibrator2`` ("entropy2") or ``IInt8MinMaxCalibrator`` ("minmax") for ``model_path``.

    Set it as ``config.int8_calibrator`` with ``BuilderFlag.INT8`` (TensorRT <= 10). A stale
    cache raises :class:`StaleCacheError` here, before the build starts.
    """
    reason = tensorrt_import_error()
    if reason is not None:
        raise CalibrationError(f"the legacy calibrator needs TensorRT ({SUPPORTED}): {reason}")
    import tensorrt as trt

    bases: dict[str, Any] = {"entropy2": trt.IInt8EntropyCalibrator2, "minmax": trt.IInt8MinMaxCalibrator}
    if algorithm not in bases:
        raise CalibrationError(f"algorithm must be one of {sorted(bases)}, got {algorithm!r}")
    _, spec = load_model_and_spec(model_path)
    calib = CalibrationSet.load(calib_dir, spec, limit=limit)
    binding = CacheBinding(
        model_sha256=sha256_file(model_path),
        algorithm=algorithm,
        input_size=spec.input_size,
        calibration_set=_set_identity(calib),
        n_images=(len(calib) // batch) * batch,
        tensorrt_version=str(trt.__version__),
    )
    cache = Path(cache_path) if cache_path is not None else None
    load_cache(cache, binding)  # fail early on a stale cache
    feeder = BatchFeeder(calib, batch)
    calibrator: trt.IInt8Calibrator
    if algorithm == "entropy2":
        calibrator = _EntropyClass()(feeder, cache, binding)
    else:
        calibrator = _MinMaxClass()(feeder, cache, binding)
    return calibrator


def _set_identity(calib: CalibrationSet) -> str:
    digest = hashlib.sha256()
    for path in calib.files:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


_Factory = Callable[[BatchFeeder, "Path | None", CacheBinding], "trt.IInt8Calibrator"]


def _EntropyClass() -> _Factory:  # returns a class
    import tensorrt as trt

    class EntropyCalibrator(_CalibratorLogic, trt.IInt8EntropyCalibrator2):
        def __init__(self, feeder: BatchFeeder, cache: Path | None, binding: CacheBinding) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self._setup(feeder, cache, binding)

    return EntropyCalibrator


def _MinMaxClass() -> _Factory:  # returns a class
    import tensorrt as trt

    class MinMaxCalibrator(_CalibratorLogic, trt.IInt8MinMaxCalibrator):
        def __init__(self, feeder: BatchFeeder, cache: Path | None, binding: CacheBinding) -> None:
            trt.IInt8MinMaxCalibrator.__init__(self)
            self._setup(feeder, cache, binding)

    return MinMaxCalibrator
