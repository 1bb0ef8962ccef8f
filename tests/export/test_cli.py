"""edge-export CLI: onnx subcommand end to end, argument errors, engine without TensorRT."""

from __future__ import annotations

import importlib
import importlib.util

import pytest

from stopsign.edge.model.onnx_meta import read_spec_from_onnx
from stopsign.export.cli import main
from stopsign.export.tensorrt_build import TensorRTUnavailable, tensorrt_version


def test_onnx_subcommand(checkpoint_dir, tmp_path, capsys):
    out = tmp_path / "m.onnx"
    assert main(["onnx", "--weights", str(checkpoint_dir), "--img", "128", "--half", "--out", str(out)]) == 0
    spec = read_spec_from_onnx(out)
    assert (spec.input_size, spec.precision) == ((128, 128), "fp16")
    assert "sha256" in capsys.readouterr().out


def test_onnx_without_img_takes_the_checkpoints_input_size(checkpoint_dir, spec, tmp_path):
    out = tmp_path / "m.onnx"
    assert main(["onnx", "--weights", str(checkpoint_dir), "--out", str(out)]) == 0
    assert read_spec_from_onnx(out).input_size == spec.input_size != (416, 416)


def test_nms_subcommand(checkpoint_dir, tmp_path):
    out = tmp_path / "m.onnx"
    assert main(["onnx", "--weights", str(checkpoint_dir), "--img", "128", "--nms", "--out", str(out)]) == 0
    assert read_spec_from_onnx(out).output_layout == "efficient_nms"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["onnx", "--weights", "{missing}", "--out", "{out}"], "no such checkpoint"),
        (["onnx", "--weights", "{ckpt}", "--img", "100", "--out", "{out}"], "multiple"),
    ],
)
def test_errors_exit_1_with_message(checkpoint_dir, tmp_path, capsys, argv, message):
    values = {"missing": str(tmp_path / "nope"), "out": str(tmp_path / "m.onnx"), "ckpt": str(checkpoint_dir)}
    assert main([a.format(**values) for a in argv]) == 1
    assert message in capsys.readouterr().err


def test_batch_and_dynamic_are_exclusive(checkpoint_dir, tmp_path):
    with pytest.raises(SystemExit):
        main(
            [
                "onnx",
                "--weights",
                str(checkpoint_dir),
                "--batch",
                "2",
                "--dynamic",
                "--out",
                str(tmp_path / "m.onnx"),
            ]
        )


@pytest.mark.skipif(
    importlib.util.find_spec("tensorrt") is not None
    and hasattr(importlib.import_module("tensorrt"), "Builder"),
    reason="TensorRT is installed: test_tensorrt_build.py covers builds",
)
def test_engine_without_tensorrt_is_a_clear_error(fp32_onnx, tmp_path, capsys):
    with pytest.raises(TensorRTUnavailable):  # precondition; where TensorRT works test_tensorrt_build.py runs
        tensorrt_version()
    assert main(["engine", str(fp32_onnx), "--out", str(tmp_path / "m.engine")]) == 1
    assert "tensorrt" in capsys.readouterr().err.lower()


def test_engine_without_the_tensorrt_package_is_a_clear_error(fp32_onnx, tmp_path, capsys, monkeypatch):
    """No tensorrt package at all (not even the stubs): the same clear error, not a traceback."""
    import sys

    monkeypatch.setitem(sys.modules, "tensorrt", None)  # what Python does for a missing package
    assert main(["engine", str(fp32_onnx), "--out", str(tmp_path / "m.engine")]) == 1
    assert "tensorrt is not installed" in capsys.readouterr().err
