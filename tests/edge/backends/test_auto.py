"""``--backend auto``: which backend is picked for which model files and runtimes (fake availability),
and that an explicitly named backend is never swapped for another."""

from __future__ import annotations

from pathlib import Path

import pytest

from stopsign.edge.backends import base
from stopsign.edge.backends.auto import Availability, ModelFiles, choose_backend
from stopsign.edge.backends.base import BackendError, resolve_backend
from stopsign.edge.model.artifacts import sha256_file
from stopsign.edge.model.engine_sidecar import EngineSidecar, write_sidecar
from stopsign.edge.model.spec import ModelSpec

EVERYTHING = Availability(True, True, True, True, True, "10.3.0", "8.7")
CPU_ONLY = Availability(onnxruntime=True, torch=True)


def make_files(folder: Path, engine_trt: str | None = "10.3.0", checkpoint: bool = False) -> dict[str, Path]:
    """m.onnx (+ m.engine with a sidecar built for TensorRT ``engine_trt`` on 8.7) and a checkpoint folder."""
    onnx = folder / "m.onnx"
    onnx.write_bytes(b"onnx")
    files = {"onnx": onnx}
    if engine_trt is not None:
        engine = folder / "m.engine"
        engine.write_bytes(b"engine bytes")
        sidecar = EngineSidecar(ModelSpec(class_names=["stop_sign"]), sha256_file(engine), str(onnx),
                                sha256_file(onnx), engine_trt, "Orin", "8.7", "fp16")  # fmt: skip
        write_sidecar(engine, sidecar)
        files["engine"] = engine
    if checkpoint:
        ckpt = folder / "ckpt"
        ckpt.mkdir()
        (ckpt / "spec.json").write_text("{}")
        files["checkpoint"] = ckpt
    return files


@pytest.mark.parametrize(
    ("model", "available", "engine_trt", "label", "picked"),
    [
        ("onnx", EVERYTHING, "10.3.0", "tensorrt", "engine"),  # engine beside the ONNX, current
        ("engine", EVERYTHING, "10.3.0", "tensorrt", "engine"),
        ("onnx", EVERYTHING, "10.1.0", "onnxruntime-cuda", "onnx"),  # stale engine skipped
        ("onnx", EVERYTHING, None, "onnxruntime-cuda", "onnx"),  # no engine
        ("onnx", Availability(onnxruntime=True, onnxruntime_cuda=True), "10.3.0", "onnxruntime-cuda", "onnx"),
        ("onnx", CPU_ONLY, "10.3.0", "onnxruntime-cpu", "onnx"),
        # OpenVINO only when ONNX Runtime is missing (not faster at equal accuracy yet: docs/benchmarks.md)
        ("onnx", Availability(onnxruntime=True, openvino=True), None, "onnxruntime-cpu", "onnx"),
        ("onnx", Availability(openvino=True), None, "openvino-cpu", "onnx"),
        (
            "onnx",
            Availability(onnxruntime=True, onnxruntime_cuda=True, openvino=True),
            None,
            "onnxruntime-cuda",
            "onnx",
        ),
        (
            "onnx",
            Availability(True, True, True, True, True, "10.3.0", "8.7", True),
            "10.3.0",
            "tensorrt",
            "engine",
        ),
        ("checkpoint", EVERYTHING, None, "torch-cuda", "checkpoint"),
        ("checkpoint", CPU_ONLY, None, "torch-cpu", "checkpoint"),
    ],
)
def test_preference_order(
    tmp_path: Path, model: str, available: Availability, engine_trt: str | None, label: str, picked: str
) -> None:
    files = make_files(tmp_path, engine_trt, checkpoint=True)
    choice = choose_backend(files[model], available)
    assert choice.label == label
    assert choice.model_path == files[picked]
    assert label in choice.message() and choice.reason in choice.message()


def test_a_stale_engine_is_reported_as_skipped(tmp_path: Path) -> None:
    files = make_files(tmp_path, "10.1.0")
    choice = choose_backend(files["onnx"], EVERYTHING)
    assert "built with TensorRT 10.1.0, running TensorRT 10.3.0" in choice.message()


@pytest.mark.parametrize(
    ("model", "available", "error"),
    [
        ("engine", CPU_ONLY, "TensorRT or a CUDA GPU is missing"),
        ("onnx", Availability(torch=True, torch_cuda=True), "onnxruntime missing"),
        ("checkpoint", Availability(onnxruntime=True), "torch missing"),
    ],
)
def test_nothing_fits_names_every_reason(
    tmp_path: Path, model: str, available: Availability, error: str
) -> None:
    files = make_files(tmp_path, checkpoint=True)
    with pytest.raises(BackendError, match=error):
        choose_backend(files[model], available)


def test_model_files(tmp_path: Path) -> None:
    files = make_files(tmp_path, checkpoint=True)
    assert ModelFiles.find(files["onnx"]) == ModelFiles(engine=files["engine"], onnx=files["onnx"])
    assert ModelFiles.find(files["checkpoint"]) == ModelFiles(checkpoint=files["checkpoint"])
    assert ModelFiles.find(tmp_path / "missing.onnx") == ModelFiles()


def test_auto_prints_its_choice_and_explicit_never_falls_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    files = make_files(tmp_path, engine_trt=None)
    cls = resolve_backend("auto", files["onnx"])
    assert cls.name == "onnxruntime"
    assert "backend auto: onnxruntime-" in capsys.readouterr().err
    # Explicitly asked and not available: an error, not another backend.
    monkeypatch.setattr(base.backend_class("onnxruntime"), "is_available", classmethod(lambda cls: False))
    with pytest.raises(BackendError, match="'onnxruntime' is not available"):
        resolve_backend("onnxruntime", files["onnx"])


@pytest.mark.parametrize(
    ("available", "ir", "label", "picked", "skipped"),
    [
        # On a CPU with OpenVINO, the INT8 IR made for this ONNX beats ONNX Runtime FP32.
        (Availability(onnxruntime=True, openvino=True), "current", "openvino-cpu", "ir", ""),
        (Availability(openvino=True), "current", "openvino-cpu", "ir", ""),
        # Without an INT8 dot-product instruction (AVX2 only) ONNX Runtime FP32 is faster and exact.
        (
            Availability(onnxruntime=True, openvino=True, int8_dot_product=False),
            "current",
            "onnxruntime-cpu",
            "onnx",
            "no INT8 dot-product instruction",
        ),
        # ... unless there is nothing else to run it with.
        (Availability(openvino=True, int8_dot_product=False), "current", "openvino-cpu", "ir", ""),
        # A re-exported ONNX makes the IR stale: skipped, with the reason.
        (
            Availability(onnxruntime=True, openvino=True),
            "stale",
            "onnxruntime-cpu",
            "onnx",
            "made from another m.onnx",
        ),
        (Availability(onnxruntime=True), "current", "onnxruntime-cpu", "onnx", "OpenVINO is not installed"),
        (
            Availability(onnxruntime=True, openvino=True),
            None,
            "onnxruntime-cpu",
            "onnx",
            "edge-calibrate openvino",
        ),
        # A GPU path still comes first.
        (
            Availability(onnxruntime=True, onnxruntime_cuda=True, openvino=True),
            "current",
            "onnxruntime-cuda",
            "onnx",
            "",
        ),
    ],
)
def test_the_openvino_int8_ir_beside_the_onnx(
    tmp_path: Path, available: Availability, ir: str | None, label: str, picked: str, skipped: str
) -> None:
    from tests.edge.model.test_openvino_ir import make_ir

    files = {}
    if ir is not None:
        files["onnx"], files["ir"] = make_ir(tmp_path)
        if ir == "stale":
            files["onnx"].write_bytes(b"re-exported")
    else:
        files["onnx"] = make_files(tmp_path, engine_trt=None)["onnx"]
    choice = choose_backend(files["onnx"], available)
    assert choice.label == label and choice.model_path == files[picked]
    assert skipped in choice.message()
    # Replay checks the file it is given: never the IR.
    assert choose_backend(files["onnx"], available, with_ir=False).model_path == files["onnx"]


def test_resolve_model_returns_the_file_auto_chose(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from stopsign.edge.backends.base import resolve_model
    from tests.edge.model.test_openvino_ir import make_ir

    onnx, xml = make_ir(tmp_path)
    real_detect = Availability.detect
    monkeypatch.setattr(Availability, "detect", classmethod(
        lambda cls, files: Availability(onnxruntime=True, openvino=True) if files.onnx else real_detect(files)))  # fmt: skip
    cls, path = resolve_model("auto", onnx)
    assert (cls.name, path) == ("openvino", xml)
    assert resolve_backend("auto", onnx).name == "onnxruntime"  # without the IR (replay)
    assert resolve_model("onnxruntime", onnx)[1] == onnx  # asked for: the file as given
