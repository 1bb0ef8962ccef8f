"""ONNX Runtime backend: CPU, CUDA or TensorRT execution provider, never a silent CPU fallback."""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from stopsign.edge.backends.base import Backend, BackendError, BackendOptions
from stopsign.edge.model.spec import ONNX_METADATA_KEY, ModelSpec, ModelSpecError

log = logging.getLogger(__name__)

PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}


def requested_providers(device: str, available: list[str]) -> list[str]:
    """Providers to ask for ``device``; ``auto`` = CUDA when this onnxruntime build has it, else CPU."""
    if device == "auto":
        device = "cuda" if "CUDAExecutionProvider" in available else "cpu"
    return list(PROVIDERS[device])


def default_threads() -> int:
    """One intra-op thread per core the process may use (2 on a Jetson Nano-class board)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


class OnnxRuntimeBackend(Backend):
    """Runs a ``.onnx`` model whose metadata holds its ModelSpec (``stopsign.model_spec``)."""

    name = "onnxruntime"

    def __init__(self) -> None:
        self._session: Any = None
        self._input_name = ""
        self._providers: list[str] = []
        self._asked: list[str] = []
        self.model_path: Path | None = None
        self.spec: ModelSpec | None = None
        self.fallback = False

    @classmethod
    def is_available(cls) -> bool:
        return importlib.util.find_spec("onnxruntime") is not None

    def load(self, model_path: str | Path, spec: ModelSpec | None, options: BackendOptions) -> ModelSpec:
        import onnxruntime as ort

        path = Path(model_path)
        if not path.is_file():
            raise BackendError(f"{path}: no such model file")
        if options.device not in ("auto", *PROVIDERS):
            raise BackendError(
                f"onnxruntime backend: device {options.device!r} is not one of auto, {', '.join(PROVIDERS)}"
            )
        session_options = ort.SessionOptions()
        session_options.intra_op_num_threads = options.threads or default_threads()
        session_options.inter_op_num_threads = 1
        # Spinning worker threads would steal the capture thread's core on a 2-core board.
        session_options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        for key, value in options.properties:
            # ONNX Runtime takes any key here and ignores the ones it does not know: only its
            # session config entries (``session.*``) are passed, so a typo of another kind fails.
            if not key.startswith("session."):
                raise BackendError(
                    f"onnxruntime backend: option {key!r} is not a session config entry (session.*, "
                    "e.g. session.intra_op.allow_spinning=1)"
                )
            session_options.add_session_config_entry(key, value)
        self._session_entries = {"session.intra_op.allow_spinning": "0", **dict(options.properties)}
        session_options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        asked = requested_providers(options.device, ort.get_available_providers())
        try:
            session = ort.InferenceSession(str(path), sess_options=session_options, providers=asked)
        except Exception as exc:  # onnxruntime raises InvalidProtobuf, Fail, NoSuchFile, ...
            raise BackendError(f"{path}: onnxruntime cannot load it as an ONNX model ({exc})") from None
        got = list(session.get_providers())
        if got != asked:
            message = f"{path}: asked onnxruntime for {asked} but it runs on {got}"
            if not options.allow_fallback:
                raise BackendError(message + "; pass --allow-fallback to accept that")
            log.warning("%s (accepted: --allow-fallback)", message)
            self.fallback = True
        if spec is None:
            spec = self._spec_from_metadata(session, path)
        self._check_io(session, spec, path)
        self._session, self._providers, self._asked = session, got, asked
        self._input_name = session.get_inputs()[0].name
        batch_dim = session.get_inputs()[0].shape[0]
        self.fixed_batch = batch_dim if isinstance(batch_dim, int) and batch_dim > 0 else None
        self.model_path, self.spec = path, spec
        return spec

    @staticmethod
    def _spec_from_metadata(session: Any, path: Path) -> ModelSpec:
        metadata = dict(session.get_modelmeta().custom_metadata_map)
        text = metadata.get(ONNX_METADATA_KEY)
        if text is None:
            raise BackendError(
                f"{path}: no '{ONNX_METADATA_KEY}' ModelSpec in the ONNX metadata (keys: "
                f"{sorted(metadata) or 'none'}); export the model with `edge-export onnx`"
            )
        try:
            return ModelSpec.from_json(text, source=f"{path} metadata")
        except ModelSpecError as exc:
            raise BackendError(str(exc)) from None

    @staticmethod
    def _check_io(session: Any, spec: ModelSpec, path: Path) -> None:
        if spec.output_layout != "yolov5_raw":
            raise BackendError(
                f"{path}: output layout {spec.output_layout!r} needs the tensorrt backend "
                "(EfficientNMS_TRT is a TensorRT plugin)"
            )
        shape = session.get_inputs()[0].shape
        hw = tuple(shape[2:4]) if len(shape) == 4 else None
        if hw is None or any(isinstance(v, int) and v != s for v, s in zip(hw, spec.input_size)):
            raise BackendError(
                f"{path}: input shape {shape} does not match ModelSpec input_size {spec.input_size}"
            )
        out = session.get_outputs()[0].shape
        if len(out) != 3 or (isinstance(out[2], int) and out[2] != 5 + spec.num_classes):
            raise BackendError(
                f"{path}: output shape {out} is not (batch, N, 5 + {spec.num_classes}) for {spec.num_classes} classes"
            )

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """(B, 3, H, W) float32 -> (B, N, 5 + nc). A model exported with a fixed batch of 1 runs
        the images one after the other (same result; ``edge-export onnx --dynamic`` batches them)."""
        if self._session is None:
            raise BackendError("onnxruntime backend used before load()")
        if self.fixed_batch == 1 and batch.shape[0] > 1:
            outputs = [
                self._session.run(None, {self._input_name: batch[i : i + 1]})[0] for i in range(len(batch))
            ]
            return np.concatenate(outputs)
        if self.fixed_batch is not None and batch.shape[0] != self.fixed_batch:
            raise BackendError(
                f"{self.model_path}: the model takes a batch of exactly {self.fixed_batch}, got {batch.shape[0]}"
            )
        return self._session.run(None, {self._input_name: batch})[0]

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "model": str(self.model_path),
            "providers": self._providers,
            "asked": self._asked,
            "fallback": self.fallback,
            "batch": self.fixed_batch or "dynamic",
            "session_config": getattr(self, "_session_entries", {}),
        }

    def close(self) -> None:
        self._session = None
