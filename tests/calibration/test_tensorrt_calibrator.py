"""Legacy TensorRT calibrators: batch feeding (plain Python), TensorRT paths, and mypy against tensorrt-stubs."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from stopsign.calibration.calibset import CalibrationSet
from stopsign.calibration.errors import CalibrationError, StaleCacheError
from stopsign.calibration.tensorrt_calibrator import BatchFeeder, make_calibrator, tensorrt_import_error
from stopsign.edge.onnx_meta import read_spec_from_onnx

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


def _typecheckable_stubs(target: Path) -> Path | None:
    """Copy tensorrt-stubs to ``target`` with its two syntax errors fixed; None when not installed.

    tensorrt-stubs 10.13.0.35.1 names parameters ``in`` (IPluginV3) and puts parameters without a
    default after ones with a default (INetworkDefinition.add_scale_nd); mypy refuses to parse
    either. The fix renames ``in`` and gives the trailing parameters ``= ...``; nothing else changes.
    The stubs also lack py.typed, so mypy only sees them through MYPYPATH.
    """
    spec = importlib.util.find_spec("tensorrt_stubs")
    if spec is None or spec.origin is None:
        return None
    site = Path(spec.origin).parent.parent
    for package in ("tensorrt", "tensorrt_bindings"):
        if not (site / package).is_dir():
            return None
        shutil.copytree(site / package, target / package)
    stub = target / "tensorrt_bindings" / "tensorrt.pyi"
    text = re.sub(r"([(,] )in: ", r"\1in_: ", stub.read_text())

    def add_defaults(match: re.Match[str]) -> str:
        head, params, tail = match.group(1), match.group(2).split(", "), match.group(3)
        seen_default = False
        for i, param in enumerate(params):
            seen_default = seen_default or "=" in param
            if seen_default and "=" not in param and ":" in param and not param.startswith("*"):
                params[i] = param + " = ..."
        return f"{head}({', '.join(params)}){tail}"

    stub.write_text(re.sub(r"^( *def \w+)\((.*)\)( -> .*:)$", add_defaults, text, flags=re.M))
    return target


@pytest.mark.skipif(importlib.util.find_spec("mypy") is None, reason="mypy is not installed")
def test_mypy_clean_against_tensorrt_stubs(tmp_path: Path) -> None:
    stubs = _typecheckable_stubs(tmp_path / "stubs")
    if stubs is None:
        pytest.skip("tensorrt-stubs is not installed (pip install tensorrt-stubs --no-deps)")
    config = tmp_path / "mypy.ini"
    config.write_text(
        "[mypy]\npython_version = 3.10\nignore_missing_imports = True\nwarn_unused_ignores = True\n"
        "[mypy-tensorrt_bindings.*]\nignore_errors = True\n[mypy-tensorrt.*]\nignore_errors = True\n"
    )
    # Negative control: the stubs are really in effect (a wrong call is caught).
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import tensorrt as trt\n\ndef f(c: trt.IInt8MinMaxCalibrator) -> str:\n    return c.get_batch_size()\n"
    )
    env = {"MYPYPATH": str(stubs), "PATH": "/usr/bin:/bin"}
    base = [
        sys.executable,
        "-m",
        "mypy",
        "--config-file",
        str(config),
        "--cache-dir",
        str(tmp_path / "cache"),
    ]
    bad = subprocess.run([*base, str(probe)], capture_output=True, text=True, env=env, cwd=REPO)
    assert bad.returncode == 1 and "Incompatible return value" in bad.stdout, bad.stdout + bad.stderr
    result = subprocess.run(
        [*base, "calibration/tensorrt_calibrator.py"], capture_output=True, text=True, env=env, cwd=REPO
    )
    assert result.returncode == 0, result.stdout + result.stderr
