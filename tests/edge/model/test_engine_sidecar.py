"""Engine sidecar: written atomically, refused on another TensorRT / GPU / changed bytes (no TensorRT needed)."""

from __future__ import annotations

import json

import pytest

from stopsign.edge.model.artifacts import sha256_file
from stopsign.edge.model.engine_sidecar import (
    EngineSidecar,
    EngineSidecarError,
    check_engine_sidecar,
    engine_staleness,
    read_sidecar,
    sidecar_path,
    write_sidecar,
)
from stopsign.edge.model.gpu_info import normalize_compute_capability
from stopsign.edge.model.spec import ModelSpec


@pytest.fixture
def engine(tmp_path):
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"onnx bytes")
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"serialized engine")
    sidecar = EngineSidecar(
        model_spec=ModelSpec(["stop_sign"], precision="fp16"),
        engine_sha256=sha256_file(engine),
        onnx_path=str(onnx),
        onnx_sha256=sha256_file(onnx),
        tensorrt_version="10.3.0",
        gpu_name="Orin",
        compute_capability="8.7",
        precision="fp16",
    )
    write_sidecar(engine, sidecar)
    return engine


def test_round_trip_and_relative_onnx_path(engine):
    raw = json.loads(sidecar_path(engine).read_text())
    assert raw["onnx_path"] == "m.onnx"  # relative: the folder can move to the car as a whole
    sidecar = check_engine_sidecar(engine, "10.3.0", (8, 7))
    assert sidecar.onnx_path == str(engine.parent / "m.onnx") and sidecar.model_spec.precision == "fp16"
    assert engine_staleness(engine, "10.3.0", "8.7") is None


@pytest.mark.parametrize(
    ("version", "cc", "tamper", "message"),
    [
        ("10.4.0", "8.7", False, "TensorRT 10.3.0, running TensorRT 10.4.0"),
        ("10.3.0", "8.6", False, "compute capability 8.7"),
        ("10.3.0", "8.7", True, "SHA-256"),
    ],
)
def test_refusals_say_how_to_rebuild(engine, version, cc, tamper, message):
    if tamper:
        engine.write_bytes(b"truncated")
    with pytest.raises(EngineSidecarError, match=message) as info:
        check_engine_sidecar(engine, version, cc)
    assert "edge-export engine" in str(info.value) and "--if-stale" in str(info.value)
    assert engine_staleness(engine, version, cc) is not None


def test_staleness_from_onnx_and_precision(engine):
    assert (
        engine_staleness(engine, "10.3.0", "8.7", precision="int8") == "precision int8 asked, engine is fp16"
    )
    (engine.parent / "m.onnx").write_bytes(b"re-exported")
    assert "changed" in engine_staleness(engine, "10.3.0", "8.7")


def test_missing_and_malformed_sidecars(engine):
    sidecar_path(engine).write_text("{not json")
    with pytest.raises(EngineSidecarError, match="not valid JSON"):
        read_sidecar(engine)
    sidecar_path(engine).write_text(json.dumps({"engine_sha256": "x", "extra": 1}))
    with pytest.raises(EngineSidecarError, match="unknown keys \\['extra'\\]"):
        read_sidecar(engine)
    sidecar_path(engine).unlink()
    with pytest.raises(EngineSidecarError, match="missing"):
        check_engine_sidecar(engine, "10.3.0", "8.7")


@pytest.mark.parametrize(
    ("value", "expected"), [("8.7", "8.7"), ((8, 7), "8.7"), ("sm_87", "8.7"), ("12.0", "12.0")]
)
def test_normalize_compute_capability(value, expected):
    assert normalize_compute_capability(value) == expected


def test_bad_compute_capability():
    with pytest.raises(ValueError, match="compute capability"):
        normalize_compute_capability("orin")
