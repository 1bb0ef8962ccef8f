"""The OpenVINO INT8 IR beside an ONNX: its sidecar check (no OpenVINO needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stopsign.edge.model.artifacts import sha256_file
from stopsign.edge.model.openvino_ir import (
    SIDECAR_VERSION,
    OpenVinoIrError,
    check_ir_for_onnx,
    ir_paths_for,
    read_ir_spec,
)
from stopsign.edge.model.spec import ModelSpec, ModelSpecError


def make_ir(folder: Path, onnx_bytes: bytes = b"onnx") -> tuple[Path, Path]:
    """m.onnx and m.openvino.xml/.bin/.json whose sidecar matches them; returns (onnx, xml)."""
    onnx = folder / "m.onnx"
    onnx.write_bytes(onnx_bytes)
    xml, sidecar = ir_paths_for(onnx)
    xml.write_text("<net/>")
    xml.with_suffix(".bin").write_bytes(b"weights")
    record = {"sidecar_version": SIDECAR_VERSION, "model_spec": ModelSpec(class_names=["stop_sign"], precision="int8").to_dict(),
              "onnx_path": onnx.name, "onnx_sha256": sha256_file(onnx), "xml_sha256": sha256_file(xml),
              "bin_sha256": sha256_file(xml.with_suffix(".bin"))}  # fmt: skip
    sidecar.write_text(json.dumps(record))
    return onnx, xml


def test_paths() -> None:
    assert ir_paths_for(Path("a/stopsign.onnx")) == (
        Path("a/stopsign.openvino.xml"),
        Path("a/stopsign.openvino.json"),
    )


def test_a_matching_ir_passes_and_its_spec_reads(tmp_path: Path) -> None:
    onnx, xml = make_ir(tmp_path)
    check_ir_for_onnx(xml, onnx)
    assert read_ir_spec(xml).precision == "int8"


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda onnx, xml: onnx.write_bytes(b"re-exported"), "made from another m.onnx"),
        (lambda onnx, xml: xml.with_suffix(".bin").write_bytes(b"torn"), "m.openvino.bin: SHA-256 differs"),
        (lambda onnx, xml: xml.write_text("<edited/>"), "m.openvino.xml: SHA-256 differs"),
        (lambda onnx, xml: xml.with_suffix(".bin").unlink(), "its weights m.openvino.bin are missing"),
        (lambda onnx, xml: xml.with_suffix(".json").unlink(), "no sidecar m.openvino.json"),
        (lambda onnx, xml: xml.with_suffix(".json").write_text("{"), "not a valid OpenVINO IR sidecar"),
        (
            lambda onnx, xml: xml.with_suffix(".json").write_text(
                '{"sidecar_version": 9, "onnx_sha256": "", "xml_sha256": "", "bin_sha256": ""}'
            ),
            "sidecar version 9",
        ),
    ],
)
def test_a_stale_or_torn_ir_is_refused_with_the_reason(tmp_path: Path, damage, message: str) -> None:
    onnx, xml = make_ir(tmp_path)
    damage(onnx, xml)
    with pytest.raises(OpenVinoIrError, match=message):
        check_ir_for_onnx(xml, onnx)


def test_read_ir_spec_names_a_missing_or_bad_sidecar(tmp_path: Path) -> None:
    with pytest.raises(ModelSpecError, match="no sidecar"):
        read_ir_spec(tmp_path / "x.xml")
    (tmp_path / "x.json").write_text('{"model_spec": 3}')
    with pytest.raises(ModelSpecError, match="not a valid OpenVINO IR sidecar"):
        read_ir_spec(tmp_path / "x.xml")
