"""The inference backend interface and the registry of backends by name.

A backend turns the network input (B, 3, H, W) float32 into the model's raw output (for the
"yolov5_raw" layout: (B, N, 5 + nc) float32); B > 1 carries the whole frame and its tiles. A
backend with ``image_input`` also takes the letterboxed uint8 images themselves and does the
float conversion inside its model, which saves the host a pass over the input. Backends import their runtime lazily, inside
``is_available`` and ``load``, so ``stopsign.edge`` imports without them.
"""

from __future__ import annotations

import importlib
import sys
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from stopsign.edge.model.spec import ModelSpec
from stopsign.edge.vision.detections import Detections

# name -> "module:Class", in the order ``auto`` prefers them. Modules of other issues may be absent.
BACKENDS: dict[str, str] = {
    "tensorrt": "stopsign.edge.backends.tensorrt:TensorRTBackend",
    "openvino": "stopsign.edge.backends.openvino:OpenVinoBackend",
    "onnxruntime": "stopsign.edge.backends.onnxruntime:OnnxRuntimeBackend",
    "torch": "stopsign.edge.backends.torch:TorchBackend",
}


DEVICES = ("auto", "cpu", "cuda", "tensorrt", "gpu")


class BackendError(RuntimeError):
    """A backend cannot load or run the model; the message names the model file and the cause."""


@dataclass(frozen=True)
class BackendOptions:
    """Options every backend understands (each ignores what does not apply).

    Attributes:
        device: "auto", "cpu", "cuda", "tensorrt" (ONNX Runtime execution provider choice) or "gpu"
            (an Intel GPU through OpenVINO).
        allow_fallback: accept running on a different device than asked (reported, never silent).
        threads: intra-op CPU threads; 0 = one per core.
        cache_dir: where a backend keeps compiled models (OpenVINO); None: the backend's default.
        properties: backend-specific settings as (key, value) text pairs, passed through as the
            runtime names them: OpenVINO compile properties (``ENABLE_CPU_PINNING=NO``), ONNX
            Runtime session config entries (``session.intra_op.allow_spinning=1``). A backend that
            takes none, or a key its runtime does not know, is a BackendError naming the key.
    """

    device: str = "auto"
    allow_fallback: bool = False
    threads: int = 0
    cache_dir: str | None = None
    properties: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if self.device not in DEVICES:
            raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {self.device!r}")
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0, got {self.threads}")
        for key, value in self.properties:
            if not key or not isinstance(key, str) or not isinstance(value, str):
                raise ValueError(f"properties must be (key, value) text pairs, got {(key, value)!r}")


def reject_properties(backend: str, options: BackendOptions) -> None:
    """For backends that take no backend-specific settings: a given one is an error, not ignored."""
    if options.properties:
        keys = ", ".join(key for key, _ in options.properties)
        raise BackendError(f"{backend} backend takes no --backend-option (given: {keys})")


def parse_property(text: str) -> tuple[str, str]:
    """``KEY=VALUE`` -> (key, value); the message names the text when it is not one."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip() or not value.strip():
        raise ValueError(f"backend option {text!r} is not KEY=VALUE")
    return key.strip(), value.strip()


class Backend(ABC):
    """One loaded model. Subclasses set ``name`` and implement the four methods.

    ``output_suppressed`` is True when ``infer`` returns boxes the model already suppressed
    (a TensorRT engine with EfficientNMS_TRT): the rows still decode with ``decode_yolov5``, and a
    caller may skip host NMS for them.

    ``frame_path`` is True when :meth:`detect` takes a whole frame through letterbox, inference and
    NMS on the model's device and returns only the final boxes; the detection loop then calls it
    instead of its host preprocess + ``infer`` + decode.

    ``image_input`` is True when :meth:`infer_images` takes the letterboxed (B, H, W, 3) uint8 BGR
    images as they come out of the letterbox (before scaling, channel order and layout), and
    converts them inside the compiled model; the detection loop then skips the host conversion.

    ``infer`` takes any batch B >= 1 (the whole frame and its tiles). A model file whose graph fixes
    its batch at 1 (``fixed_batch``) is run one image at a time; the result is the same.
    """

    name: str = ""
    output_suppressed: bool = False
    frame_path: bool = False
    image_input: bool = False
    fixed_batch: int | None = None  # the model file's own batch size when it fixes one, else None

    @classmethod
    @abstractmethod
    def is_available(cls) -> bool:
        """True when this backend's runtime is importable here (no model needed)."""

    @abstractmethod
    def load(self, model_path: str | Path, spec: ModelSpec | None, options: BackendOptions) -> ModelSpec:
        """Load ``model_path``; return its ModelSpec (``spec`` overrides the one stored in the file)."""

    @abstractmethod
    def infer(self, batch: np.ndarray) -> np.ndarray:
        """(B, 3, H, W) float32 network input -> raw output (B, N, 5 + nc) float32."""

    def infer_images(self, images: np.ndarray) -> np.ndarray:
        """(B, H, W, 3) uint8 letterboxed BGR images -> raw output, as :meth:`infer` of their network
        input (backends with ``image_input``)."""
        raise BackendError(f"{self.name} backend takes no uint8 images (image_input is False): use infer()")

    def detect(self, image: np.ndarray, conf: float, iou: float) -> Detections:
        """HxWx3 uint8 BGR frame -> Detections in source pixels (backends with ``frame_path``)."""
        raise BackendError(f"{self.name} backend has no on-device frame path (frame_path is False)")

    def describe(self) -> dict[str, Any]:
        """What runs the model (for the start-up line and heartbeats)."""
        return {"backend": self.name}

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the runtime's resources."""


def backend_class(name: str) -> type[Backend]:
    """The class registered as ``name``; a clear error when unknown or not built here."""
    if name not in BACKENDS:
        raise BackendError(f"unknown backend {name!r}; known: {sorted(BACKENDS)}")
    module_name, _, class_name = BACKENDS[name].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            raise BackendError(f"backend {name!r} is not part of this installation") from None
        raise
    return getattr(module, class_name)


def available_backends() -> list[str]:
    """Names of the registered backends whose runtime is importable, in ``auto`` preference order."""
    names = []
    for name in BACKENDS:
        try:
            cls = backend_class(name)
        except BackendError:
            continue
        if cls.is_available():
            names.append(name)
    return names


def resolve_backend(name: str, model_path: str | Path) -> type[Backend]:
    """The backend class to load ``model_path`` with.

    ``auto`` picks the best available backend for the model files present (see
    :mod:`stopsign.edge.backends.auto`) and prints what it picked and why to stderr. Any other
    name is taken as asked: an error when that runtime is missing, never a fallback.
    """
    return _resolve(name, model_path, with_ir=False)[0]


def resolve_model(name: str, model_path: str | Path) -> tuple[type[Backend], Path]:
    """The backend class and the file to load: as :func:`resolve_backend`, but ``auto`` may also
    pick a file made for this model from ``model_path`` (the OpenVINO INT8 IR beside an ONNX).
    What edge-detect and edge-bench run; replay checks the very file it is given."""
    return _resolve(name, model_path, with_ir=True)


def _resolve(name: str, model_path: str | Path, with_ir: bool) -> tuple[type[Backend], Path]:
    if name == "auto":
        from stopsign.edge.backends.auto import choose_backend

        choice = choose_backend(model_path, with_ir=with_ir)
        print(choice.message(), file=sys.stderr, flush=True)
        chosen = Path(model_path) if choice.name == "tensorrt" else choice.model_path
        return backend_class(choice.name), chosen
    cls = backend_class(name)
    if not cls.is_available():
        raise BackendError(f"backend {name!r} is not available here (its runtime is not installed)")
    return cls, Path(model_path)
