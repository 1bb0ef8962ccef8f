"""Engine builds with the real TensorRT: run where it imports (TensorRT 10 or 11 with a GPU), skip elsewhere."""

from __future__ import annotations

import json

import pytest

from stopsign.edge.model.engine_sidecar import check_engine_sidecar, engine_staleness, sidecar_path
from stopsign.edge.model.gpu_info import gpu_info
from stopsign.export.tensorrt_build import (
    EngineBuildOptions,
    TensorRTUnavailable,
    build_engine,
    build_if_stale,
    tensorrt_version,
)

pytestmark = pytest.mark.tensorrt


@pytest.fixture(scope="module")
def trt_version() -> str:
    try:
        return tensorrt_version()
    except TensorRTUnavailable as exc:
        pytest.skip(f"TensorRT unavailable: {exc}")


@pytest.fixture(scope="module")
def fp16_engine(trt_version, fp16_onnx, tmp_path_factory):
    out = tmp_path_factory.mktemp("engine") / "m.engine"
    # The FP16 ONNX builds on both: TensorRT 10 via the FP16 flag, TensorRT 11 strongly typed.
    build_engine(fp16_onnx, out, EngineBuildOptions(precision="fp16", workspace_mb=512))
    return out


def test_engine_and_sidecar(trt_version, fp16_engine, fp16_onnx):
    sidecar = check_engine_sidecar(fp16_engine, trt_version, gpu_info().compute_capability)
    assert sidecar.tensorrt_version == trt_version and sidecar.precision == "fp16"
    assert sidecar.model_spec.onnx_sha256 == sidecar.onnx_sha256
    assert json.loads(sidecar_path(fp16_engine).read_text())["build_flags"]["workspace_mb"] == 512


def test_if_stale_does_nothing_when_current(fp16_engine):
    assert build_if_stale(fp16_engine) is None


def test_if_stale_rebuilds_after_corruption(trt_version, fp16_engine):
    fp16_engine.write_bytes(fp16_engine.read_bytes()[:100])
    assert build_if_stale(fp16_engine) is not None
    assert engine_staleness(fp16_engine, trt_version, gpu_info().compute_capability) is None
