"""OpenVINO backend: the project's ONNX files (FP32, FP16, INT8 Q/DQ) on an x86 or Arm CPU, or an
Intel GPU, compiled once per batch size with a latency hint.

OpenVINO reads the ONNX files ``edge-export`` and ``edge-calibrate qdq`` make: a Q/DQ file runs
with INT8 kernels (ONNX Runtime's CPU provider emulates them and is slower than FP32,
``docs/int8.md``). Its signed INT8 activations (what TensorRT needs) are read rewritten as the
same grid in unsigned INT8 (``stopsign.edge.model.qdq_unsigned``): with them as they are, OpenVINO's
result was 20 points of mAP@0.5 off FP32; rewritten, it matches FP32 (docs/benchmarks.md). It also
runs the IR ``edge-calibrate openvino`` writes beside an ONNX, which ``--backend auto`` prefers on
a CPU (``stopsign.edge.backends.auto``). Per batch size the model is reshaped to a
static input (static shapes compile to faster CPU kernels than a dynamic batch), compiled once and
given one infer request whose input tensor is written in place each call: no allocation per frame
but the returned copy of the output (0.25 MB at 416 px).

The detection loop hands it the letterboxed uint8 images (``image_input``): a second compiled
variant of the model takes (B, H, W, 3) uint8 BGR and does the float conversion, channel order,
scale and layout inside the model (OpenVINO's pre-processing API), with the caller's buffer bound
as the input tensor, so the host neither converts nor copies the input. Its output equals the
float path's (tested); ``infer`` keeps taking float network inputs.

Compiled models are cached on disk (``cache_dir``: ``--cache-dir``, default
``~/.cache/stopsign-edge/openvino``) under ``<OpenVINO version>/<model SHA-256 prefix>``, so a car
starts without recompiling, and a new model or OpenVINO version never reuses an old blob. A cache
entry that fails to load is removed and rebuilt, with a warning.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from stopsign.edge.backends.base import Backend, BackendError, BackendOptions
from stopsign.edge.backends.onnxruntime import default_threads
from stopsign.edge.model.artifacts import sha256_bytes, sha256_file
from stopsign.edge.model.openvino_ir import SPEC_RT_KEY
from stopsign.edge.model.spec import ONNX_METADATA_KEY, ModelSpec, ModelSpecError

log = logging.getLogger(__name__)

DEVICES = {"auto": "CPU", "cpu": "CPU", "gpu": "GPU"}


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/stopsign-edge/openvino`` (``~/.cache/...`` when unset)."""
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "stopsign-edge" / "openvino"


class OpenVinoBackend(Backend):
    """Runs a ``.onnx`` model whose metadata holds its ModelSpec, or the INT8 IR ``edge-calibrate
    openvino`` makes (``.xml`` + ``.bin``, the ModelSpec in its runtime info), through OpenVINO."""

    name = "openvino"
    image_input = True

    def __init__(self, cache_dir: str | Path | None = None, use_cache: bool = True) -> None:
        """``cache_dir``: where compiled models are kept (None: :func:`default_cache_dir`);
        ``use_cache=False`` compiles on every load."""
        self.cache_root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.use_cache = use_cache
        self._core: Any = None
        self._model: Any = None  # the model as read, reshaped per batch size
        self._device = "CPU"
        self._config: dict[str, Any] = {}
        # (batch size, takes uint8 images) -> infer request of that compiled variant
        self._requests: dict[tuple[int, bool], Any] = {}
        self._bound: dict[int, np.ndarray] = {}  # batch size -> the caller's array bound as its input
        self.model_path: Path | None = None
        self.cache_dir: Path | None = None
        self.cache_rebuilt = False
        self.spec: ModelSpec | None = None
        self.version = ""

    @classmethod
    def is_available(cls) -> bool:
        return importlib.util.find_spec("openvino") is not None

    def load(self, model_path: str | Path, spec: ModelSpec | None, options: BackendOptions) -> ModelSpec:
        import openvino as ov

        path = Path(model_path)
        if not path.is_file():
            raise BackendError(f"{path}: no such model file")
        is_ir = path.suffix.lower() == ".xml"
        if path.suffix.lower() != ".onnx" and not is_ir:
            raise BackendError(
                f"{path}: the openvino backend runs .onnx files (edge-export) and OpenVINO IR .xml files "
                "(edge-calibrate openvino)"
            )
        if is_ir and not path.with_suffix(".bin").is_file():
            raise BackendError(f"{path}: its weights file {path.with_suffix('.bin').name} is missing")
        if options.device not in DEVICES:
            raise BackendError(f"openvino backend: device {options.device!r} is not one of {sorted(DEVICES)}")
        core = ov.Core()
        device = DEVICES[options.device]
        if device not in core.available_devices:
            raise BackendError(
                f"openvino backend: device {device} asked but OpenVINO lists {core.available_devices} here"
            )
        try:
            model = self._read(core, path, is_ir)
        except Exception as exc:  # OpenVINO raises RuntimeError subclasses for unreadable models
            kind = "an OpenVINO IR" if is_ir else "an ONNX model"
            raise BackendError(f"{path}: OpenVINO cannot read it as {kind} ({exc})") from None
        spec = spec or self._spec_from_metadata(
            model, path, SPEC_RT_KEY if is_ir else ["framework", ONNX_METADATA_KEY]
        )
        self._check_io(model, spec, path)
        self._core, self._model, self._device = core, model, device
        self.version = ov.get_version()
        self._config = {
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_NUM_THREADS": options.threads or default_threads(),
        }
        if device != "CPU":
            self._config.pop("INFERENCE_NUM_THREADS")
        elif spec.precision in ("fp32", "int8"):
            # On CPUs with bfloat16 (AVX512_BF16, AMX) OpenVINO would run an FP32 model in bf16:
            # 1.7x faster here, but objectness moves by up to 1e-3 and a sign near the threshold
            # confirms frames apart from ONNX Runtime. An FP32 file means FP32. In an INT8 file the
            # layers left in float (the Detect head, SiLU) run in f32 too: as fast here (5.76 against
            # 5.71 ms), and objectness 0.10 instead of 0.13 at most from ONNX Runtime's INT8. FP16
            # files keep OpenVINO's default.
            self._config["INFERENCE_PRECISION_HINT"] = "f32"
        self._config.update(self._checked_properties(core, device, options))
        if options.cache_dir is not None:
            self.cache_root = Path(options.cache_dir)
        if self.use_cache:
            digest = sha256_file(path) + (sha256_file(path.with_suffix(".bin")) if is_ir else "")
            self.cache_dir = self.cache_root / self.version.split("-")[0] / sha256_bytes(digest.encode())[:16]
        self.model_path, self.spec = path, spec
        self._requests, self._bound = {}, {}
        fixed = model.inputs[0].get_partial_shape()[0]
        self.fixed_batch = fixed.get_length() if fixed.is_static else None
        # Compile what the detection loop runs now: a model OpenVINO cannot compile fails at load,
        # not on frame 1. The float-input variant (infer) compiles on its first call.
        self._request(1, images=True)
        return spec

    @staticmethod
    def _read(core: Any, path: Path, is_ir: bool) -> Any:
        """The model as OpenVINO reads it; a Q/DQ ONNX with signed INT8 activations is read with them
        rewritten as unsigned (:mod:`stopsign.edge.model.qdq_unsigned`: the same grid, which OpenVINO's
        CPU kernels compute correctly; with the signed ones the shipped model lost 20 points)."""
        if is_ir:
            return core.read_model(str(path))
        if importlib.util.find_spec("onnx") is None:
            model = core.read_model(str(path))
            if any(op.get_type_name() == "FakeQuantize" for op in model.get_ops()):
                log.warning(
                    "openvino: %s is a Q/DQ file and the onnx package is missing, so its signed INT8 "
                    "activations cannot be rewritten: expect results far from FP32 (pip install onnx)",
                    path,
                )
            return model
        import onnx

        from stopsign.edge.model.qdq_unsigned import has_signed_activations, unsigned_activations

        proto = onnx.load(str(path))
        if not has_signed_activations(proto):
            return core.read_model(str(path))
        unsigned_activations(proto)
        with tempfile.TemporaryDirectory(prefix="stopsign-openvino.") as folder:
            rewritten = Path(folder) / path.name
            onnx.save(proto, str(rewritten))
            return core.read_model(str(rewritten))

    @staticmethod
    def _spec_from_metadata(model: Any, path: Path, key: list[str]) -> ModelSpec:
        try:
            text = str(model.get_rt_info(key).value)
        except Exception:  # the key is absent: OpenVINO raises its own error type
            how = "`edge-calibrate openvino`" if key == SPEC_RT_KEY else "`edge-export onnx`"
            raise BackendError(
                f"{path}: no ModelSpec in its metadata ({'/'.join(key)}); make the model with {how}"
            ) from None
        try:
            return ModelSpec.from_json(text, source=f"{path} metadata")
        except ModelSpecError as exc:
            raise BackendError(str(exc)) from None

    @staticmethod
    def _check_io(model: Any, spec: ModelSpec, path: Path) -> None:
        if spec.output_layout != "yolov5_raw":
            raise BackendError(f"{path}: output layout {spec.output_layout!r} needs the tensorrt backend")
        if len(model.inputs) != 1 or len(model.outputs) != 1:
            raise BackendError(
                f"{path}: {len(model.inputs)} inputs and {len(model.outputs)} outputs, expected 1 and 1"
            )
        shape = model.inputs[0].get_partial_shape()
        dims = [d.get_length() if d.is_static else None for d in shape] if shape.rank.is_static else []
        if len(dims) != 4 or tuple(dims[2:]) != tuple(spec.input_size):
            raise BackendError(
                f"{path}: input shape {shape} does not match ModelSpec input_size {spec.input_size}"
            )

    def _request(self, batch: int, images: bool = False) -> Any:
        """The infer request for ``batch`` images, compiling (or loading from the cache) on first
        use; ``images``: the variant taking uint8 images (see the module docstring)."""
        request = self._requests.get((batch, images))
        if request is not None:
            return request
        assert self.spec is not None and self.model_path is not None
        fixed = self._model.inputs[0].get_partial_shape()[0]
        if fixed.is_static and fixed.get_length() != batch:
            if fixed.get_length() != 1:
                raise BackendError(
                    f"{self.model_path}: the model takes a batch of exactly {fixed.get_length()}"
                )
            return None  # a batch-1 file: infer() runs the images one at a time
        model = self._model.clone()
        model.reshape([batch, 3, *self.spec.input_size])
        if images:
            model = with_image_input(model, self.spec)
        compiled = self._compile(model)
        request = compiled.create_infer_request()
        self._requests[(batch, images)] = request
        return request

    @staticmethod
    def _checked_properties(core: Any, device: str, options: BackendOptions) -> dict[str, str]:
        """``--backend-option`` pairs as compile properties; a key the device does not take is an error
        here, at load, rather than at the first frame's compile."""
        if not options.properties:
            return {}
        writable = {
            name
            for name, mode in core.get_property(device, "SUPPORTED_PROPERTIES").items()
            if mode in ("RW", "WO")
        }
        for key, _ in options.properties:
            if key not in writable:
                raise BackendError(
                    f"openvino backend: {device} has no settable property {key!r}; it takes {sorted(writable)}"
                )
        return dict(options.properties)

    def _compile(self, model: Any) -> Any:
        config = dict(self._config)
        if self.cache_dir is not None:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            config["CACHE_DIR"] = str(self.cache_dir)
        try:
            return self._core.compile_model(model, self._device, config)
        except Exception as exc:  # a corrupt cache blob, or a graph this device cannot compile
            if self.cache_dir is None:
                raise BackendError(
                    f"{self.model_path}: OpenVINO cannot compile it for {self._device} ({exc})"
                ) from None
            log.warning(
                "openvino: compiling %s with cache %s failed (%s); rebuilding the cache",
                self.model_path,
                self.cache_dir,
                exc,
            )
            shutil.rmtree(self.cache_dir, ignore_errors=True)
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            self.cache_rebuilt = True
            try:
                return self._core.compile_model(model, self._device, config)
            except Exception as again:
                raise BackendError(
                    f"{self.model_path}: OpenVINO cannot compile it for {self._device} ({again})"
                ) from None

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """(B, 3, H, W) float32 -> (B, N, 5 + nc) float32 (a copy: the request's buffers are reused)."""
        spec = self._loaded()
        if batch.ndim != 4 or batch.shape[1:] != (3, *spec.input_size) or len(batch) < 1:
            raise BackendError(
                f"openvino backend: input shape {batch.shape}, model takes (B, 3, {spec.input_size[0]}, {spec.input_size[1]})"
            )
        request = self._request(len(batch))
        if request is None:  # a fixed batch-1 model given more images
            return np.concatenate([self.infer(batch[i : i + 1]) for i in range(len(batch))])
        request.get_input_tensor().data[...] = batch
        request.infer()
        return np.array(request.get_output_tensor(0).data, dtype=np.float32)

    def infer_images(self, images: np.ndarray) -> np.ndarray:
        """(B, H, W, 3) uint8 letterboxed BGR -> (B, N, 5 + nc) float32, as ``infer`` of their
        network input. The array is bound as the request's input (no copy) and stays bound: pass the
        same reused buffer each call, as FrameBatcher does, and binding happens once."""
        import openvino as ov

        spec = self._loaded()
        if (
            images.dtype != np.uint8
            or images.ndim != 4
            or images.shape[1:] != (*spec.input_size, 3)
            or len(images) < 1
        ):
            raise BackendError(
                f"openvino backend: images {images.shape} {images.dtype}, model takes uint8 (B, {spec.input_size[0]}, {spec.input_size[1]}, 3)"
            )
        request = self._request(len(images), images=True)
        if request is None:
            return np.concatenate([self.infer_images(images[i : i + 1]) for i in range(len(images))])
        if self._bound.get(len(images)) is not images:
            images = np.ascontiguousarray(images)  # shared memory needs one C-ordered block
            request.set_input_tensor(ov.Tensor(images, shared_memory=True))
            self._bound[len(images)] = images  # keeps the bound memory alive
        request.infer()
        return np.array(request.get_output_tensor(0).data, dtype=np.float32)

    def _loaded(self) -> ModelSpec:
        if self._model is None or self.spec is None:
            raise BackendError("openvino backend: inference before load()")
        return self.spec

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "model": str(self.model_path),
            "device": self._device,
            "openvino": self.version,
            "threads": self._config.get("INFERENCE_NUM_THREADS"),
            "inference_precision": self._config.get("INFERENCE_PRECISION_HINT", "openvino default"),
            "properties": {k: str(v) for k, v in self._config.items()},
            "cache": str(self.cache_dir) if self.cache_dir is not None else None,
            "precision": self.spec.precision if self.spec is not None else None,
            "input": "uint8 images, converted in the model",
        }

    def close(self) -> None:
        self._requests, self._bound = {}, {}
        self._model = self._core = None


def with_image_input(model: Any, spec: ModelSpec) -> Any:
    """``model`` (input (B, 3, H, W) float32) taking (B, H, W, 3) uint8 BGR images instead: the
    conversion to float, the channel order of ``spec.color_order``, ``spec.scale`` and the layout
    change are added to the graph, where OpenVINO fuses them with the first convolution's input
    reorder (OpenVINO's PrePostProcessor)."""
    import openvino as ov
    from openvino.preprocess import ColorFormat, PrePostProcessor

    ppp = PrePostProcessor(model)
    tensor = ppp.input().tensor()
    tensor.set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC")).set_color_format(ColorFormat.BGR)
    ppp.input().model().set_layout(ov.Layout("NCHW"))
    steps = ppp.input().preprocess().convert_element_type(ov.Type.f32)
    if spec.color_order == "RGB":
        steps.convert_color(ColorFormat.RGB)
    steps.scale(float(1.0 / spec.scale))
    return ppp.build()
