"""The ``<name>.engine.json`` sidecar beside every TensorRT engine, and the check before loading one.

A serialized TensorRT engine only runs on the TensorRT version and GPU architecture it was built
for; loading it elsewhere fails deep inside TensorRT, or worse, works until it does not. The
sidecar records what the engine was built for and from; :func:`check_engine_sidecar` refuses a
mismatch with a message saying how to rebuild on this device. Plain Python (no TensorRT) so the
check is tested everywhere and runs before TensorRT touches the file.

Sidecar JSON::

    {"sidecar_version": 1,
     "model_spec": {...ModelSpec, precision and onnx_sha256 set...},
     "engine_sha256": "...", "onnx_path": "model.onnx" (relative to the sidecar's folder when inside it),
     "onnx_sha256": "...", "tensorrt_version": "10.3.0", "gpu_name": "Orin", "compute_capability": "8.7",
     "precision": "fp16", "build_flags": {...}, "build_time_s": 81.2, "built_at": "2025-...Z"}
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from stopsign.edge.model.artifacts import atomic_write_text, sha256_file
from stopsign.edge.model.gpu_info import normalize_compute_capability
from stopsign.edge.model.spec import ModelSpec, ModelSpecError

SIDECAR_VERSION = 1


class EngineSidecarError(RuntimeError):
    """The engine cannot be used on this device (or its sidecar is missing or malformed)."""


@dataclass
class EngineSidecar:
    """What an engine was built for and from (see the module doc for the JSON)."""

    model_spec: ModelSpec
    engine_sha256: str
    onnx_path: str
    onnx_sha256: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    precision: str
    build_flags: dict[str, Any] = field(default_factory=dict)
    build_time_s: float = 0.0
    built_at: str = ""
    sidecar_version: int = SIDECAR_VERSION

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["model_spec"] = self.model_spec.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: Any, source: str) -> EngineSidecar:
        if not isinstance(data, dict):
            raise EngineSidecarError(f"{source}: expected a JSON object")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        missing = sorted(
            k
            for k in (
                "model_spec",
                "engine_sha256",
                "onnx_sha256",
                "tensorrt_version",
                "compute_capability",
                "precision",
            )
            if k not in data
        )
        if unknown or missing:
            raise EngineSidecarError(f"{source}: unknown keys {unknown}, missing keys {missing}")
        if int(data.get("sidecar_version", 1)) > SIDECAR_VERSION:
            raise EngineSidecarError(
                f"{source}: sidecar_version {data['sidecar_version']} is newer than this runtime"
            )
        values = dict(data)
        try:
            values["model_spec"] = ModelSpec.from_dict(data["model_spec"], source=f"{source} model_spec")
            values["compute_capability"] = normalize_compute_capability(data["compute_capability"])
        except (ModelSpecError, ValueError) as exc:
            raise EngineSidecarError(str(exc)) from None
        values.setdefault("onnx_path", "")
        values.setdefault("gpu_name", "")
        return cls(**values)


def sidecar_path(engine_path: str | os.PathLike[str]) -> Path:
    """``M.engine`` -> ``M.engine.json``."""
    engine_path = Path(engine_path)
    return engine_path.with_name(engine_path.name + ".json")


def write_sidecar(engine_path: str | os.PathLike[str], sidecar: EngineSidecar) -> Path:
    """Write the sidecar atomically; ``onnx_path`` is stored relative to its folder when inside it."""
    target = sidecar_path(engine_path)
    data = sidecar.to_dict()
    onnx_path = Path(sidecar.onnx_path)
    if onnx_path.is_absolute():
        try:
            data["onnx_path"] = str(onnx_path.relative_to(target.parent.resolve()))
        except ValueError:
            data["onnx_path"] = str(onnx_path)
    return atomic_write_text(target, json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_sidecar(engine_path: str | os.PathLike[str]) -> EngineSidecar:
    """Read ``<engine>.json``; ``onnx_path`` comes back absolute (resolved against the sidecar's folder)."""
    path = sidecar_path(engine_path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise EngineSidecarError(
            f"{path}: missing; an engine without its sidecar cannot be checked. Rebuild it with "
            f"`edge-export engine MODEL.onnx --out {engine_path}`"
        ) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise EngineSidecarError(f"{path}: not valid JSON ({exc})") from None
    sidecar = EngineSidecar.from_dict(data, str(path))
    if sidecar.onnx_path and not Path(sidecar.onnx_path).is_absolute():
        sidecar.onnx_path = str((path.parent / sidecar.onnx_path).resolve())
    return sidecar


def _rebuild_hint(engine_path: Path, sidecar: EngineSidecar | None) -> str:
    onnx = sidecar.onnx_path if sidecar and sidecar.onnx_path else "MODEL.onnx"
    return f"rebuild it on this device with `edge-export engine {onnx} --if-stale --out {engine_path}`"


def check_engine_sidecar(
    engine_path: str | os.PathLike[str],
    running_trt_version: str,
    compute_capability: str | tuple[int, int],
    verify_hash: bool = True,
) -> EngineSidecar:
    """Return the engine's sidecar if the engine may be loaded here, else raise EngineSidecarError.

    Args:
        engine_path: the ``.engine`` file; its sidecar is ``<engine_path>.json``.
        running_trt_version: ``tensorrt.__version__`` of this process (engines need the exact version).
        compute_capability: of the GPU that will run it, "8.7" or (8, 7).
        verify_hash: compare the engine file's SHA-256 with the sidecar's (skip only when just checked).
    """
    engine_path = Path(engine_path)
    if not engine_path.is_file():
        raise EngineSidecarError(f"{engine_path}: no such engine file; {_rebuild_hint(engine_path, None)}")
    sidecar = read_sidecar(engine_path)
    running_cc = normalize_compute_capability(compute_capability)
    problems = []
    if str(sidecar.tensorrt_version) != str(running_trt_version):
        problems.append(
            f"built with TensorRT {sidecar.tensorrt_version}, running TensorRT {running_trt_version}"
        )
    if sidecar.compute_capability != running_cc:
        problems.append(
            f"built for compute capability {sidecar.compute_capability} ({sidecar.gpu_name or 'unknown GPU'}), "
            f"this GPU is {running_cc}"
        )
    if verify_hash and not problems:
        digest = sha256_file(engine_path)
        if digest != sidecar.engine_sha256:
            problems.append(
                f"engine SHA-256 {digest[:16]}... differs from the sidecar's {sidecar.engine_sha256[:16]}... "
                "(file corrupt, truncated or replaced)"
            )
    if problems:
        raise EngineSidecarError(
            f"{engine_path}: " + "; ".join(problems) + f"; {_rebuild_hint(engine_path, sidecar)}"
        )
    return sidecar


def engine_staleness(
    engine_path: str | os.PathLike[str],
    running_trt_version: str,
    compute_capability: str | tuple[int, int],
    onnx_path: str | os.PathLike[str] | None = None,
    precision: str | None = None,
) -> str | None:
    """Why the engine must be rebuilt, or None when it is current (what ``--if-stale`` asks).

    Stale when the engine or sidecar is missing or malformed, the TensorRT version, compute
    capability or engine hash do not match, the source ONNX changed since the build, or a
    different ``precision`` is asked for.
    """
    try:
        sidecar = check_engine_sidecar(engine_path, running_trt_version, compute_capability)
    except EngineSidecarError as exc:
        return str(exc)
    source = Path(onnx_path) if onnx_path is not None else Path(sidecar.onnx_path)
    if not source.is_file():
        return f"source ONNX {source} is missing"
    if sha256_file(source) != sidecar.onnx_sha256:
        return f"source ONNX {source} changed since the engine was built"
    if precision is not None and precision != sidecar.precision:
        return f"precision {precision} asked, engine is {sidecar.precision}"
    return None
