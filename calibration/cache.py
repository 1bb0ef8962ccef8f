"""TensorRT calibration caches bound to the model they were computed for (plain Python, no TensorRT).

TensorRT reads a cache's bytes as they are (``trtexec --calib`` too), so the binding lives in a
sidecar ``<cache>.json``: the SHA-256 of the ONNX model, the calibration algorithm, the input
size, the SHA-256 of the cache bytes, and for information the calibration set and TensorRT
version. A cache is reused only when the sidecar names the same model, algorithm and input size
and the bytes still hash to the recorded value; anything else is a :class:`StaleCacheError` that
says what differs and how to recalibrate. A cache without a sidecar is refused too: nothing says
which model it belongs to.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from stopsign.calibration.errors import StaleCacheError
from stopsign.edge.model.artifacts import atomic_write_bytes, atomic_write_text, sha256_bytes

ALGORITHMS = ("entropy2", "minmax")
SIDECAR_VERSION = 1


@dataclass(frozen=True)
class CacheBinding:
    """What a calibration cache was computed for.

    Attributes:
        model_sha256: SHA-256 of the ONNX file the engine is built from.
        algorithm: "entropy2" (IInt8EntropyCalibrator2) or "minmax" (IInt8MinMaxCalibrator).
        input_size: (height, width) of the network input.
        calibration_set: SHA-256 of the calibration manifest (or file list); informational.
        n_images: images fed to the calibrator; informational.
        tensorrt_version: ``tensorrt.__version__`` of the run that wrote it; informational.
    """

    model_sha256: str
    algorithm: str
    input_size: tuple[int, int]
    calibration_set: str = ""
    n_images: int = 0
    tensorrt_version: str = ""

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["input_size"] = list(self.input_size)
        return data


def sidecar_path(cache: str | Path) -> Path:
    cache = Path(cache)
    return cache.with_name(cache.name + ".json")


def read_sidecar(cache: str | Path) -> dict[str, Any]:
    """The sidecar of ``cache`` as a dict; StaleCacheError when missing or malformed."""
    side = sidecar_path(cache)
    if not side.is_file():
        raise StaleCacheError(
            f"{cache}: calibration cache has no sidecar {side.name}, so nothing says which model it is for; "
            "delete it to recalibrate"
        )
    try:
        data = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise StaleCacheError(
            f"{side}: unreadable calibration-cache sidecar ({exc}); delete the cache"
        ) from None
    required = ("model_sha256", "algorithm", "input_size", "cache_sha256")
    if not isinstance(data, dict) or any(key not in data for key in required):
        raise StaleCacheError(f"{side}: sidecar lacks one of {required}; delete the cache to recalibrate")
    return data


def check_cache(cache: str | Path, expected: CacheBinding) -> bytes:
    """The cache bytes when ``cache`` belongs to ``expected``; StaleCacheError naming what differs."""
    cache = Path(cache)
    data = read_sidecar(cache)
    problems = []
    if data["model_sha256"] != expected.model_sha256:
        problems.append(
            f"it was computed for model sha256 {str(data['model_sha256'])[:16]}..., "
            f"this model is {expected.model_sha256[:16]}..."
        )
    if data["algorithm"] != expected.algorithm:
        problems.append(f"algorithm {data['algorithm']!r}, asked {expected.algorithm!r}")
    if list(data["input_size"]) != list(expected.input_size):
        problems.append(f"input size {data['input_size']}, model takes {list(expected.input_size)}")
    payload = cache.read_bytes()
    if sha256_bytes(payload) != data["cache_sha256"]:
        problems.append("its bytes no longer match the sha256 in the sidecar (truncated or edited)")
    if problems:
        raise StaleCacheError(
            f"{cache}: stale calibration cache: {'; '.join(problems)}. "
            "Delete it (and its .json) or pass another --cache to recalibrate"
        )
    return payload


def load_cache(cache: str | Path | None, expected: CacheBinding) -> bytes | None:
    """Bytes of a valid cache, None when there is none (calibrate), StaleCacheError when it is stale."""
    if cache is None or not Path(cache).is_file():
        return None
    return check_cache(cache, expected)


def write_cache(cache: str | Path, payload: bytes, binding: CacheBinding) -> Path:
    """Write the cache, then its sidecar (both atomically); returns the cache path."""
    if binding.algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {binding.algorithm!r}")
    cache = Path(cache)
    atomic_write_bytes(cache, payload)
    sidecar = {"sidecar_version": SIDECAR_VERSION, **binding.to_dict(), "cache_sha256": sha256_bytes(payload)}
    atomic_write_text(sidecar_path(cache), json.dumps(sidecar, indent=2, sort_keys=True) + "\n")
    return cache
