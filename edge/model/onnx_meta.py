"""Read the ModelSpec stored in an ONNX file's ``metadata_props`` (key ``stopsign.model_spec``).

``stopsign.edge`` must import without onnx: the ``onnx`` package is used when installed (it reads
the metadata without building an inference session), else onnxruntime's model metadata, else a
clear error saying what to install.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from stopsign.edge.model.artifacts import sha256_file
from stopsign.edge.model.spec import ONNX_METADATA_KEY, ModelSpec, ModelSpecError


def onnx_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of an ONNX file's bytes: the model's identity in sidecars, caches and replays."""
    return sha256_file(path)


def read_onnx_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """All ``metadata_props`` of an ONNX file as a dict (key -> value string)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such ONNX file")
    if importlib.util.find_spec("onnx") is not None:
        import onnx

        try:
            model = onnx.load(str(path), load_external_data=False)
        except Exception as exc:  # onnx raises DecodeError / ValueError subclasses for corrupt files
            raise ModelSpecError(f"{path}: not a readable ONNX file ({exc})") from None
        return {prop.key: prop.value for prop in model.metadata_props}
    if importlib.util.find_spec("onnxruntime") is not None:
        import onnxruntime

        try:
            session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise ModelSpecError(f"{path}: not a readable ONNX file ({exc})") from None
        return dict(session.get_modelmeta().custom_metadata_map)
    raise ModelSpecError(
        f"{path}: reading ONNX metadata needs `onnx` or `onnxruntime` (pip install onnxruntime)"
    )


def read_spec_from_onnx(path: str | os.PathLike[str]) -> ModelSpec:
    """The ModelSpec stored in ``path``; a clear error when it is missing or malformed."""
    metadata = read_onnx_metadata(path)
    text = metadata.get(ONNX_METADATA_KEY)
    if text is None:
        raise ModelSpecError(
            f"{path}: no '{ONNX_METADATA_KEY}' in the ONNX metadata; export it with `edge-export onnx` "
            f"(keys present: {sorted(metadata) or 'none'})"
        )
    return ModelSpec.from_json(text, source=f"{path} metadata '{ONNX_METADATA_KEY}'")
