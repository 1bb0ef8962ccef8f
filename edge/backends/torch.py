"""PyTorch backend: a training checkpoint folder on CUDA (FP16, CUDA graph) or on the CPU (FP32).

The one place the runtime imports ``stopsign.train`` (for the model builder), lazily inside
``load``: a Jetson without torch never reaches it. BatchNorm is fused; on CUDA the weights are
FP16, the input buffer is allocated once on the device and, with ``cuda_graph``, the whole
forward is captured once and replayed per frame (no per-layer launch overhead).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

from stopsign.edge.backends.base import Backend, BackendError, BackendOptions
from stopsign.edge.spec import ModelSpec

WARMUP_RUNS = 3


class TorchBackend(Backend):
    name = "torch"

    def __init__(self, cuda_graph: bool = True, half: bool | None = None) -> None:
        """``half``: FP16 weights and input (None: FP16 on CUDA, FP32 on the CPU)."""
        self.use_cuda_graph = cuda_graph
        self.half = half
        self._model: Any = None
        self._device: Any = None
        self._dtype: Any = None
        self._input: Any = None  # device buffer, fixed shape
        self._output: Any = None
        self._graph: Any = None
        self.spec: ModelSpec | None = None

    @classmethod
    def is_available(cls) -> bool:
        return importlib.util.find_spec("torch") is not None

    def load(self, model_path: str | Path, spec: ModelSpec | None, options: BackendOptions) -> ModelSpec:
        import torch

        from stopsign.train.checkpoint import CheckpointError, load_checkpoint

        try:
            checkpoint = load_checkpoint(model_path)
        except CheckpointError as exc:
            raise BackendError(f"torch backend: {exc}") from None
        cuda = torch.cuda.is_available() and options.device in ("auto", "cuda")
        if options.device == "cuda" and not torch.cuda.is_available() and not options.allow_fallback:
            raise BackendError(
                "torch backend: --device cuda asked but CUDA is not available (use --allow-fallback)"
            )
        if options.threads:
            torch.set_num_threads(options.threads)
        self._device = torch.device("cuda" if cuda else "cpu")
        half = cuda if self.half is None else self.half and cuda
        self._dtype = torch.float16 if half else torch.float32
        model = checkpoint.model.eval().fuse()
        model.detect.export = True
        self._model = model.to(self._device, self._dtype)
        self.spec = spec or checkpoint.spec
        h, w = self.spec.input_size
        self._input = torch.zeros((1, 3, h, w), device=self._device, dtype=self._dtype)
        with torch.inference_mode():
            for _ in range(WARMUP_RUNS):
                self._output = self._model(self._input)
            if cuda and self.use_cuda_graph:
                self._capture_graph()
        return self.spec

    def _capture_graph(self) -> None:
        import torch

        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):  # warm-up on a side stream, as graph capture requires
            for _ in range(WARMUP_RUNS):
                self._output = self._model(self._input)
        torch.cuda.current_stream().wait_stream(stream)
        self._graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self._graph):
            self._output = self._model(self._input)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        import torch

        if self._model is None:
            raise BackendError("torch backend: infer() before load()")
        if batch.shape != tuple(self._input.shape):
            raise BackendError(
                f"torch backend: input shape {batch.shape}, model takes {tuple(self._input.shape)}"
            )
        with torch.inference_mode():
            self._input.copy_(torch.from_numpy(batch), non_blocking=False)
            if self._graph is not None:
                self._graph.replay()
            else:
                self._output = self._model(self._input)
            return self._output.float().cpu().numpy()

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "device": str(self._device),
            "precision": "fp16" if self._dtype is not None and "16" in str(self._dtype) else "fp32",
            "cuda_graph": self._graph is not None,
        }

    def close(self) -> None:
        self._graph = self._model = self._input = self._output = None
