"""PyTorch backend: a training checkpoint folder on CUDA (FP16, CUDA graphs) or on the CPU (FP32).

The one place the runtime imports ``stopsign.train`` (for the model builder), lazily inside
``load``: a Jetson without torch never reaches it. BatchNorm is fused; on CUDA the weights are
FP16 (``half=False`` keeps FP32, with TF32 off so FP32 means FP32), the input buffer is allocated
once on the device and, with ``cuda_graph``, the forward is captured once and replayed per frame.

Two ways in:

* ``infer(batch)``: the :class:`~stopsign.edge.backends.base.Backend` contract, (1, 3, H, W)
  float32 letterboxed on the host -> raw head (1, N, 5 + nc) float32 on the host.
* ``detect(image)``: the whole frame on the GPU. The HxWx3 uint8 BGR frame is copied into a pinned
  host buffer, sent with one async copy, letterboxed (channel swap, bilinear resize, normalise,
  written into the padded input) and run; decode + class-aware NMS run on the GPU too and only the
  final boxes come back. On CUDA with ``cuda_graph`` the letterbox and the forward are one graph per
  source size. On the CPU the same code runs eagerly.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Any

import numpy as np

from stopsign.edge.backends.base import Backend, BackendError, BackendOptions, reject_properties
from stopsign.edge.model.spec import ModelSpec
from stopsign.edge.vision.detections import Detections
from stopsign.edge.vision.letterbox import compute_transform
from stopsign.edge.vision.postprocess import MAX_DETECTIONS

WARMUP_RUNS = 3


class TorchBackend(Backend):
    name = "torch"

    def __init__(self, cuda_graph: bool = True, half: bool | None = None, nms: str = "auto") -> None:
        """``half``: FP16 weights and input (None: FP16 on CUDA, FP32 on the CPU).
        ``nms``: "auto" (torchvision's kernel when importable), "torchvision" or "torch" (ours)."""
        if nms not in ("auto", "torch", "torchvision"):
            raise ValueError(f"nms must be auto, torch or torchvision, got {nms!r}")
        self.use_cuda_graph = cuda_graph
        self.half = half
        self.nms = nms
        self._model: Any = None
        self._device: Any = None
        self._dtype: Any = None
        self._input: Any = None  # device buffer, fixed shape
        self._output: Any = None
        self._graph: Any = None
        self._batches: dict[int, _BatchPath] = {}  # batch sizes > 1 (whole frame + tiles), by size
        self._frames: dict[tuple[int, int], _FramePath] = {}  # per source (h, w)
        self._conf_t: Any = None  # detect()'s thresholds as device scalars (read by its graphs)
        self._iou_t: Any = None
        self._thresholds: tuple[float, float] | None = None
        self.fixed_decode_fallbacks = 0  # frames detect() had to decode the dynamic way
        self.frame_graph_error = ""  # why detect() could not be captured as a CUDA graph, if so
        self._torchvision = False
        self.spec: ModelSpec | None = None

    @classmethod
    def is_available(cls) -> bool:
        return importlib.util.find_spec("torch") is not None

    def load(self, model_path: str | Path, spec: ModelSpec | None, options: BackendOptions) -> ModelSpec:
        reject_properties("torch", options)
        import torch

        from stopsign.edge.backends.torch_ops import torchvision_nms_available
        from stopsign.train.checkpoint import CheckpointError, load_checkpoint

        if options.device not in ("auto", "cpu", "cuda"):
            raise BackendError(f"torch backend: device {options.device!r} is not one of auto, cpu, cuda")
        if options.device == "cuda" and not torch.cuda.is_available() and not options.allow_fallback:
            raise BackendError(
                "torch backend: --device cuda asked but CUDA is not available (use --allow-fallback)"
            )
        try:
            checkpoint = load_checkpoint(model_path)
        except CheckpointError as exc:
            raise BackendError(f"torch backend: {exc}") from None
        if self.nms == "torchvision" and not torchvision_nms_available():
            raise BackendError("torch backend: nms='torchvision' asked but torchvision is not installed")
        self._torchvision = self.nms == "torchvision" or (self.nms == "auto" and torchvision_nms_available())
        cuda = torch.cuda.is_available() and options.device in ("auto", "cuda")
        if options.threads:
            torch.set_num_threads(options.threads)
        self._device = torch.device("cuda" if cuda else "cpu")
        # On CUDA the loop hands whole frames to detect(): letterbox, model and NMS stay on the GPU
        # and only the final boxes come back. On the CPU the host path is as fast, and the reference.
        self.frame_path = cuda
        half = cuda if self.half is None else self.half and cuda
        self._dtype = torch.float16 if half else torch.float32
        if cuda and not half:
            # FP32 convolutions default to TF32 on Ampere+; parity with ONNX Runtime needs real FP32.
            torch.backends.cudnn.allow_tf32 = False
            torch.backends.cuda.matmul.allow_tf32 = False
        model = checkpoint.model.eval().fuse()
        model.detect.export = True
        self._model = model.to(self._device, self._dtype)
        self.spec = spec or checkpoint.spec
        h, w = self.spec.input_size
        self._input = torch.zeros((1, 3, h, w), device=self._device, dtype=self._dtype)
        self._conf_t = torch.zeros((), device=self._device)
        self._iou_t = torch.zeros((), device=self._device)
        self._thresholds = None
        with torch.inference_mode():
            for _ in range(WARMUP_RUNS):
                self._output = self._model(self._input)
            if cuda and self.use_cuda_graph:
                self._graph, self._output = self._capture(lambda: self._model(self._input))
        return self.spec

    @staticmethod
    def _capture(step: Any) -> tuple[Any, Any]:
        """Warm ``step`` up on a side stream (as capture requires), then capture it into a CUDA graph.

        Returns (graph, output): each replay rewrites ``output`` in place.
        """
        import torch

        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(WARMUP_RUNS):
                step()
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            output = step()
        return graph, output

    def infer(self, batch: np.ndarray) -> np.ndarray:
        import torch

        if self._model is None:
            raise BackendError("torch backend: infer() before load()")
        if batch.ndim != 4 or batch.shape[1:] != tuple(self._input.shape[1:]) or len(batch) < 1:
            raise BackendError(
                f"torch backend: input shape {batch.shape}, model takes (B, {', '.join(map(str, self._input.shape[1:]))})"
            )
        if len(batch) > 1:
            return self._infer_batch(batch)
        with torch.inference_mode():
            self._input.copy_(torch.from_numpy(batch))
            if self._graph is not None:
                self._graph.replay()
            else:
                self._output = self._model(self._input)
            return self._output.float().cpu().numpy()

    def _infer_batch(self, batch: np.ndarray) -> np.ndarray:
        """A batch of B > 1 (the whole frame and its tiles): its own input buffer and, on CUDA with
        ``cuda_graph``, its own graph, made at the first batch of that size."""
        import torch

        size = len(batch)
        path = self._batches.get(size)
        with torch.inference_mode():
            if path is None:
                device_input = torch.zeros(
                    (size, *self._input.shape[1:]), device=self._device, dtype=self._dtype
                )
                path = _BatchPath(device_input)
                if self._device.type == "cuda" and self.use_cuda_graph:
                    path.graph, path.output = self._capture(lambda: self._model(device_input))
                self._batches[size] = path
            path.input.copy_(torch.from_numpy(batch))
            if path.graph is not None:
                path.graph.replay()
            else:
                path.output = self._model(path.input)
            return path.output.float().cpu().numpy()

    def forward(self) -> Any:
        """Run the model on the device input buffer as it is (no copies, no sync): the model-only
        step ``infer`` wraps, for benchmarks. Returns the device output (1, N, 5 + nc)."""
        if self._model is None:
            raise BackendError("torch backend: forward() before load()")
        import torch

        with torch.inference_mode():
            if self._graph is not None:
                self._graph.replay()
            else:
                self._output = self._model(self._input)
        return self._output

    def detect(self, image: np.ndarray, conf: float = 0.25, iou: float | None = None) -> Detections:
        """HxWx3 uint8 BGR frame -> Detections in source pixels, all work on the model's device.

        ``iou`` defaults to the ModelSpec's ``nms_iou``. Same rules as letterbox + ``infer`` +
        ``decode_yolov5``; boxes differ from that host path only by the letterbox's uint8 rounding.
        Letterbox, model and a fixed-shape decode + NMS (``torch_ops.decode_fixed``) run as one
        CUDA graph and come back in one copy; a frame the fixed decode cannot hold (more boxes over
        the floor than it has room for, a long suppression chain) is decoded the dynamic way.
        """
        import torch

        from stopsign.edge.backends.torch_ops import decode, unpack_fixed

        if self._model is None or self.spec is None:
            raise BackendError("torch backend: detect() before load()")
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise BackendError(
                f"torch backend: detect() takes an HxWx3 uint8 image, got {image.shape} {image.dtype}"
            )
        iou = self.spec.nms_iou if iou is None else iou
        path = self._frames.get(image.shape[:2]) or self._frame_path(image.shape[:2])
        with torch.inference_mode():
            if (conf, iou) != self._thresholds:  # the graph reads these device scalars
                self._conf_t.fill_(conf)
                self._iou_t.fill_(iou)
                self._thresholds = (conf, iou)
            path.host_view[...] = image  # into pinned memory: the copy below is a true async DMA
            path.device_frame.copy_(path.host_frame, non_blocking=True)
            if path.graph is not None:
                path.graph.replay()
            else:
                path.output = path.step()
            fixed = unpack_fixed(path.output[1].cpu().numpy(), MAX_DETECTIONS)
            if fixed is None:
                self.fixed_decode_fallbacks += 1
                xyxy, score, class_id = decode(
                    path.output[0][0], conf, iou, use_torchvision=self._torchvision
                )
                packed = torch.cat([xyxy, score[:, None], class_id[:, None].float()], dim=1).cpu().numpy()
                fixed = (
                    np.ascontiguousarray(packed[:, :4]),
                    packed[:, 4].copy(),
                    packed[:, 5].astype(np.int64),
                )
        boxes, scores, classes = fixed
        path.transform.to_source(boxes)
        return Detections(boxes, scores, classes)

    def _frame_path(self, source_hw: tuple[int, int]) -> _FramePath:
        import torch

        from stopsign.edge.backends.torch_ops import Placement, decode_fixed, fill_padding, letterbox_into

        assert self.spec is not None
        transform, (new_h, new_w) = compute_transform(
            source_hw, self.spec.input_size, resize=self.spec.resize
        )
        place = Placement(int(transform.pad_y), int(transform.pad_x), new_h, new_w)
        cuda = self._device.type == "cuda"
        host = torch.empty((*source_hw, 3), dtype=torch.uint8, pin_memory=cuda)
        device_frame = torch.empty((*source_hw, 3), dtype=torch.uint8, device=self._device)
        # Its own input buffer: the padding is filled once and never written again.
        network_input = torch.empty_like(self._input)
        scale, rgb = self.spec.scale, self.spec.color_order == "RGB"
        fill_padding(network_input, self.spec.pad_value, scale)

        def step() -> Any:
            letterbox_into(device_frame, network_input, place, scale, rgb)
            raw = self._model(network_input)
            return raw, decode_fixed(raw[0], self._conf_t, self._iou_t)

        path = _FramePath(host, host.numpy(), device_frame, transform, step)
        if cuda and self.use_cuda_graph:
            try:
                with torch.inference_mode():
                    path.graph, path.output = self._capture(step)
            except RuntimeError as exc:  # a kernel this torch build cannot capture: run eagerly, say so
                self.frame_graph_error = f"{type(exc).__name__}: {exc}"[:300]
                logging.getLogger(__name__).warning(
                    "torch backend: detect() runs without a CUDA graph for %sx%s frames (%s)",
                    source_hw[1],
                    source_hw[0],
                    self.frame_graph_error,
                )
                path.graph = None
        self._frames[source_hw] = path
        return path

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "device": str(self._device),
            "precision": "fp16" if self._dtype is not None and "16" in str(self._dtype) else "fp32",
            "cuda_graph": self._graph is not None,
            "nms": "torchvision" if self._torchvision else "torch",
            "frame_path": self.frame_path,
            **({"frame_graph_error": self.frame_graph_error} if self.frame_graph_error else {}),
        }

    def close(self) -> None:
        self._frames, self._batches = {}, {}
        self._graph = self._model = self._input = self._output = None


class _FramePath:
    """Buffers (and the CUDA graph) of ``detect`` for one source frame size."""

    def __init__(
        self, host_frame: Any, host_view: np.ndarray, device_frame: Any, transform: Any, step: Any
    ) -> None:
        self.host_frame, self.host_view, self.device_frame = host_frame, host_view, device_frame
        self.transform, self.step = transform, step
        self.graph: Any = None
        # (raw head (1, N, 5 + nc), decode_fixed's packed rows) on the device, rewritten per frame
        self.output: Any = None


class _BatchPath:
    """Device input (B, 3, H, W), output and CUDA graph of ``infer`` for one batch size B > 1."""

    def __init__(self, device_input: Any) -> None:
        self.input = device_input
        self.graph: Any = None
        self.output: Any = None
