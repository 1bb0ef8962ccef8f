"""``--backend auto``: the fastest backend that is available here and has a model file to run.

Preference: tensorrt > torch-cuda > onnxruntime-cuda > openvino-cpu INT8 IR > onnxruntime-cpu >
openvino-cpu FP32 (> torch-cpu, the only way to run a checkpoint folder without CUDA). On a CPU,
OpenVINO wins only with the INT8 IR ``edge-calibrate openvino`` made for this very ONNX
(``M.openvino.xml`` beside ``M.onnx``, its sidecar naming the ONNX's SHA-256), and only on a CPU
with an INT8 dot-product instruction (``cpu_features``): there, at FP32 accuracy, it is the fastest
CPU path, 2x ONNX Runtime FP32 end to end; with AVX2 only it is 10 % slower than ONNX Runtime FP32
and drifts from the recorded outputs, so ONNX Runtime FP32 is taken (``docs/benchmarks.md``). An FP32 file in
OpenVINO (f32, the precision that reproduces ONNX Runtime's results) is only 8 % faster than ONNX
Runtime: ask for it with ``--backend openvino``. A candidate needs both its runtime and its file:

* tensorrt: an ``.engine``/``.plan`` given, or ``M.engine`` beside a given ``M.onnx``, whose
  sidecar matches this TensorRT version and GPU (a stale engine is skipped, with the reason);
* torch: a checkpoint folder (``spec.json`` + weights);
* openvino INT8: an IR ``.xml`` given, or ``M.openvino.xml`` beside ``M.onnx`` whose sidecar
  matches it (a stale IR is skipped, with the reason);
* openvino, onnxruntime: an ``.onnx`` file.

The choice says why it was made and why each better candidate was skipped. Only ``auto`` chooses:
an explicitly named backend that cannot load is an error (see ``base.resolve_backend``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from stopsign.edge.backends.base import BackendError, backend_class
from stopsign.edge.backends.cpu_features import cpu_flags, has_int8_dot_product
from stopsign.edge.model.engine_sidecar import EngineSidecarError, check_engine_sidecar
from stopsign.edge.model.openvino_ir import OpenVinoIrError, check_ir_for_onnx, ir_paths_for


@dataclass(frozen=True)
class ModelFiles:
    """The model files that exist for a given ``--model`` path (None: absent)."""

    engine: Path | None = None
    checkpoint: Path | None = None
    onnx: Path | None = None
    openvino_ir: Path | None = None  # M.openvino.xml beside M.onnx (edge-calibrate openvino), or given

    @classmethod
    def find(cls, model_path: str | Path, with_ir: bool = True) -> ModelFiles:
        path = Path(model_path)
        if path.is_dir():
            return cls(checkpoint=path if (path / "spec.json").is_file() else None)
        suffix = path.suffix.lower()
        if suffix in (".engine", ".plan"):
            return cls(engine=path if path.is_file() else None)
        if suffix == ".xml":
            return cls(openvino_ir=path if path.is_file() else None)
        if suffix == ".onnx":
            engine = path.with_suffix(".engine")
            ir = ir_paths_for(path)[0]
            return cls(
                engine=engine if engine.is_file() else None,
                onnx=path if path.is_file() else None,
                openvino_ir=ir if with_ir and ir.is_file() else None,
            )
        return cls()


@dataclass(frozen=True)
class Availability:
    """What runs here. ``tensorrt_version``/``compute_capability`` are set when TensorRT and a GPU are."""

    tensorrt: bool = False
    torch: bool = False
    torch_cuda: bool = False
    onnxruntime: bool = False
    onnxruntime_cuda: bool = False
    tensorrt_version: str = ""
    compute_capability: str = ""
    openvino: bool = False
    # An INT8 dot-product instruction (cpu_features): without one the INT8 IR is not the fastest.
    int8_dot_product: bool = True

    @classmethod
    def detect(cls, files: ModelFiles) -> Availability:
        """Probe only the runtimes a present model file could use (importing torch takes seconds)."""
        trt = torch = torch_cuda = ort = ort_cuda = False
        trt_version = capability = ""
        if files.engine is not None and backend_class("tensorrt").is_available():
            import tensorrt

            from stopsign.edge.model.gpu_info import gpu_info

            try:
                capability = gpu_info().compute_capability
                trt, trt_version = True, str(tensorrt.__version__)
            except RuntimeError:  # TensorRT installed but no GPU: not available
                pass
        if files.checkpoint is not None and backend_class("torch").is_available():
            import torch as torch_module

            torch, torch_cuda = True, bool(torch_module.cuda.is_available())
        if files.onnx is not None and backend_class("onnxruntime").is_available():
            import onnxruntime

            ort, ort_cuda = True, "CUDAExecutionProvider" in onnxruntime.get_available_providers()
        has_file = files.onnx is not None or files.openvino_ir is not None
        openvino = has_file and backend_class("openvino").is_available()
        dot_product = has_int8_dot_product(cpu_flags())
        return cls(
            trt, torch, torch_cuda, ort, ort_cuda, trt_version, capability, openvino, dot_product is not False
        )


@dataclass(frozen=True)
class BackendChoice:
    """``name``: registry name; ``device``: "cuda" or "cpu"; ``skipped``: better candidates and why not."""

    name: str
    device: str
    model_path: Path
    reason: str
    skipped: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return self.name if self.name == "tensorrt" else f"{self.name}-{self.device}"

    def message(self) -> str:
        text = f"backend auto: {self.label} for {self.model_path} ({self.reason})"
        return text + (f"; skipped: {'; '.join(self.skipped)}" if self.skipped else "")


def choose_backend(
    model_path: str | Path, available: Availability | None = None, with_ir: bool = True
) -> BackendChoice:
    """The best backend for ``model_path`` here; BackendError listing every candidate when none fits.

    ``with_ir``: an OpenVINO INT8 IR beside the ONNX may be chosen (the choice's ``model_path`` is
    then the IR: load that). Replay passes False: it checks the ONNX file it is given.
    """
    files = ModelFiles.find(model_path, with_ir)
    available = available if available is not None else Availability.detect(files)
    skipped: list[str] = []

    def pick(name: str, device: str, path: Path, reason: str) -> BackendChoice:
        return BackendChoice(name, device, path, reason, skipped)

    if files.engine is None:
        skipped.append("tensorrt: no .engine (beside the .onnx or given)")
    elif not available.tensorrt:
        skipped.append(f"tensorrt: {files.engine} exists but TensorRT or a CUDA GPU is missing")
    else:
        try:
            check_engine_sidecar(files.engine, available.tensorrt_version, available.compute_capability)
            return pick("tensorrt", "cuda", files.engine, f"engine sidecar matches TensorRT "
                        f"{available.tensorrt_version} and compute capability {available.compute_capability}")  # fmt: skip
        except EngineSidecarError as exc:
            skipped.append(f"tensorrt: {exc}")
    if files.checkpoint is None:
        skipped.append("torch-cuda: not a checkpoint folder")
    elif not available.torch_cuda:
        skipped.append("torch-cuda: " + ("torch has no CUDA device" if available.torch else "torch missing"))
    else:
        return pick("torch", "cuda", files.checkpoint, "checkpoint folder and torch sees a CUDA GPU")
    if files.onnx is not None and available.onnxruntime_cuda:
        return pick("onnxruntime", "cuda", files.onnx, "onnxruntime has the CUDA execution provider")
    if with_ir and files.onnx is not None and files.openvino_ir is None:
        skipped.append(
            "openvino-cpu INT8: no M.openvino.xml beside the .onnx (make one: edge-calibrate openvino)"
        )
    ort_fp32 = files.onnx is not None and available.onnxruntime
    if files.openvino_ir is not None and ort_fp32 and not available.int8_dot_product:
        skipped.append(
            "openvino-cpu INT8: this CPU has no INT8 dot-product instruction (AVX-512 VNNI, AVX-VNNI, AMX), "
            "where the INT8 IR is slower than ONNX Runtime FP32 and drifts from its outputs "
            "(docs/int8.md, INT8 on AVX2 CPUs)"
        )
    elif files.openvino_ir is not None:
        if not available.openvino:
            skipped.append(f"openvino-cpu INT8: {files.openvino_ir} exists but OpenVINO is not installed")
        else:
            try:
                if files.onnx is not None:
                    check_ir_for_onnx(files.openvino_ir, files.onnx)
                return pick("openvino", "cpu", files.openvino_ir, "INT8 IR for this model (edge-calibrate openvino): "
                            "on this CPU the fastest at FP32 accuracy, docs/benchmarks.md")  # fmt: skip
            except OpenVinoIrError as exc:
                skipped.append(f"openvino-cpu INT8: {exc}")
    if files.onnx is not None and available.onnxruntime:
        skipped.append("onnxruntime-cuda: this onnxruntime has no CUDAExecutionProvider")
        return pick("onnxruntime", "cpu", files.onnx, "onnxruntime on the CPU")
    if files.onnx is not None and available.openvino:
        skipped.append("onnxruntime: onnxruntime missing")
        return pick("openvino", "cpu", files.onnx, "OpenVINO on the CPU (onnxruntime is not installed)")
    skipped.append("onnxruntime: " + ("no .onnx file" if files.onnx is None else "onnxruntime missing"))
    if files.checkpoint is not None and available.torch:
        return pick("torch", "cpu", files.checkpoint, "checkpoint folder, torch on the CPU (FP32)")
    raise BackendError(f"no backend can run {model_path} here: " + "; ".join(skipped))
