"""Legacy TensorRT calibrators: batch feeding (plain Python), TensorRT paths, and mypy against tensorrt-stubs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stopsign.calibration.calibset import CalibrationSet
from stopsign.calibration.errors import CalibrationError, StaleCacheError
from stopsign.calibration.tensorrt_calibrator import BatchFeeder, make_calibrator, tensorrt_import_error
from stopsign.edge.model.onnx_meta import read_spec_from_onnx
from tests.tensorrt_stubs import mypy_available, run_mypy, typecheckable_stubs

REPO = Path(__file__).resolve().parents[2]
TRT_REASON = tensorrt_import_error()


class HostBuffer:
    """DeviceBuffer over host memory: the feeder's contract (one reused buffer, exact bytes) is checked on it."""

    def __init__(self, nbytes: int) -> None:
        self.data = np.zeros(nbytes // 4, np.float32)
        self.ptr = self.data.ctypes.data
        self.nbytes = nbytes
        self.uploads = 0

    def upload(self, host: np.ndarray) -> None:
        assert host.nbytes == self.nbytes and host.flags.c_contiguous
        self.data[:] = host.ravel()
        self.uploads += 1

    def free(self) -> None:
        self.data = np.zeros(0, np.float32)


@pytest.mark.parametrize(("batch", "n_batches"), [(1, 16), (3, 5), (16, 1)])
def test_feeder_walks_full_batches(fp32_model: Path, calib_dir: Path, batch: int, n_batches: int) -> None:
    calib = CalibrationSet.load(calib_dir, read_spec_from_onnx(fp32_model))
    buffer = HostBuffer(batch * 3 * 160 * 160 * 4)
    feeder = BatchFeeder(calib, batch, buffer)
    pointers = [feeder.next_pointers(["images"]) for _ in range(n_batches)]
    assert all(p == [buffer.ptr] for p in pointers)
    np.testing.assert_array_equal(
        buffer.data,
        np.concatenate(list(calib.batches(batch)))[(n_batches - 1) * batch : n_batches * batch].ravel(),
    )
    assert feeder.next_pointers(["images"]) == []  # exhausted (a partial last batch is dropped)
    assert buffer.uploads == n_batches


def test_feeder_rejects_two_inputs(fp32_model: Path, calib_dir: Path) -> None:
    calib = CalibrationSet.load(calib_dir, read_spec_from_onnx(fp32_model))
    feeder = BatchFeeder(calib, 1, HostBuffer(3 * 160 * 160 * 4))
    with pytest.raises(CalibrationError, match="feeds one input"):
        feeder.next_pointers(["images", "other"])


@pytest.mark.tensorrt
@pytest.mark.skipif(TRT_REASON is not None, reason=TRT_REASON or "")
@pytest.mark.parametrize(
    ("algorithm", "base"), [("entropy2", "IInt8EntropyCalibrator2"), ("minmax", "IInt8MinMaxCalibrator")]
)
def test_calibrator_types_and_stale_cache(
    fp32_model: Path, calib_dir: Path, tmp_path: Path, algorithm: str, base: str
) -> None:
    import tensorrt as trt

    from stopsign.calibration.cache import CacheBinding, write_cache

    calibrator = make_calibrator(algorithm, fp32_model, calib_dir, tmp_path / "m.calib")
    assert isinstance(calibrator, getattr(trt, base))
    assert calibrator.get_batch_size() == 1
    assert calibrator.read_calibration_cache() is None
    write_cache(tmp_path / "m.calib", b"cache", CacheBinding("0" * 64, algorithm, (160, 160)))
    with pytest.raises(StaleCacheError, match="computed for model sha256 0000"):
        make_calibrator(algorithm, fp32_model, calib_dir, tmp_path / "m.calib")


@pytest.mark.skipif(not mypy_available(), reason="mypy is not installed")
def test_mypy_clean_against_tensorrt_stubs(tmp_path: Path) -> None:
    stubs = typecheckable_stubs(tmp_path / "stubs")
    if stubs is None:
        pytest.skip("tensorrt-stubs is not installed (pip install tensorrt-stubs --no-deps)")
    # Negative control: the stubs are really in effect (a wrong call is caught).
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import tensorrt as trt\n\ndef f(c: trt.IInt8MinMaxCalibrator) -> str:\n    return c.get_batch_size()\n"
    )
    bad = run_mypy(stubs, probe)
    assert bad.returncode == 1 and "Incompatible return value" in bad.stdout, bad.stdout + bad.stderr
    result = run_mypy(stubs, "calibration/tensorrt_calibrator.py")
    assert result.returncode == 0, result.stdout + result.stderr
