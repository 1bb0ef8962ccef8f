"""The OpenVINO INT8 IR beside an ONNX model (``M.openvino.xml`` + ``.bin`` + ``.json``), and the
check that it belongs to that ONNX.

``edge-calibrate openvino`` writes the IR and its sidecar; ``--backend auto`` runs the IR instead
of ``M.onnx`` on a CPU with OpenVINO, but only when the sidecar names ``M.onnx``'s SHA-256: a
re-exported model makes the old IR stale, and it is skipped with the reason. Plain Python (no
OpenVINO), so the check is tested everywhere and costs no import.

Sidecar JSON::

    {"sidecar_version": 1, "model_spec": {...precision "int8"...}, "onnx_path": "stopsign.onnx",
     "onnx_sha256": "...", "xml_sha256": "...", "bin_sha256": "...", "openvino_version": "...",
     "nncf_version": "...", "quantization": {...}, "seconds": 312.4}
"""

from __future__ import annotations

import json
from pathlib import Path

from stopsign.edge.model.artifacts import sha256_file
from stopsign.edge.model.spec import ModelSpec, ModelSpecError

SIDECAR_VERSION = 1
# Where the IR keeps its ModelSpec (JSON text) in OpenVINO's runtime info.
SPEC_RT_KEY = ["stopsign", "model_spec"]


class OpenVinoIrError(RuntimeError):
    """The IR does not belong to the model, or its sidecar is missing or malformed."""


def ir_paths_for(onnx_path: str | Path) -> tuple[Path, Path]:
    """(``M.openvino.xml``, ``M.openvino.json``) for ``M.onnx``."""
    stem = Path(onnx_path).with_suffix("")
    return stem.with_name(stem.name + ".openvino.xml"), stem.with_name(stem.name + ".openvino.json")


def sidecar_for(xml_path: str | Path) -> Path:
    return Path(xml_path).with_suffix(".json")


def check_ir_for_onnx(xml_path: str | Path, onnx_path: str | Path) -> None:
    """Raise :class:`OpenVinoIrError` unless the IR's files are whole and it was made from ``onnx_path``."""
    xml = Path(xml_path)
    sidecar = sidecar_for(xml)
    if not sidecar.is_file():
        raise OpenVinoIrError(
            f"{xml}: no sidecar {sidecar.name} (make the IR with `edge-calibrate openvino`)"
        )
    try:
        record = json.loads(sidecar.read_text(encoding="utf-8"))
        version = record["sidecar_version"]
        want_onnx, want_xml, want_bin = record["onnx_sha256"], record["xml_sha256"], record["bin_sha256"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise OpenVinoIrError(f"{sidecar}: not a valid OpenVINO IR sidecar ({exc!r})") from None
    if version != SIDECAR_VERSION:
        raise OpenVinoIrError(f"{sidecar}: sidecar version {version}, this runtime reads {SIDECAR_VERSION}")
    if not xml.with_suffix(".bin").is_file():
        raise OpenVinoIrError(f"{xml}: its weights {xml.with_suffix('.bin').name} are missing")
    if sha256_file(onnx_path) != want_onnx:
        raise OpenVinoIrError(
            f"{xml} was made from another {Path(onnx_path).name} (SHA-256 differs): stale, rerun "
            "`edge-calibrate openvino`"
        )
    for path, want in ((xml, want_xml), (xml.with_suffix(".bin"), want_bin)):
        if sha256_file(path) != want:
            raise OpenVinoIrError(f"{path}: SHA-256 differs from its sidecar (torn or edited file)")


def read_ir_spec(xml_path: str | Path) -> ModelSpec:
    """The ModelSpec recorded in the IR's sidecar (without loading OpenVINO)."""
    sidecar = sidecar_for(xml_path)
    try:
        record = json.loads(sidecar.read_text(encoding="utf-8"))
        return ModelSpec.from_dict(record["model_spec"], source=str(sidecar))
    except FileNotFoundError:
        raise ModelSpecError(
            f"{xml_path}: no sidecar {sidecar.name} (make the IR with `edge-calibrate openvino`)"
        ) from None
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelSpecError(f"{sidecar}: not a valid OpenVINO IR sidecar ({exc!r})") from None
