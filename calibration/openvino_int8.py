"""``edge-calibrate openvino``: a CPU INT8 model for OpenVINO, as an IR beside the ONNX.

Two ways to make it:

- ``--int8 M.int8.onnx`` (how the shipped IR is made): the calibrated Q/DQ file of
  ``edge-calibrate qdq`` with its signed activations rewritten as unsigned
  (:mod:`stopsign.edge.model.qdq_unsigned`): the TensorRT file's own calibration at OpenVINO's INT8
  speed, and FP32's accuracy (mAP@0.5 0.900 against 0.902 on the shipped model).
- ``--calib DIR``: NNCF post-training quantisation, below (slower to run here: 6.9 against 4.8 ms).

NNCF places the quantizers the way OpenVINO's CPU plugin executes them and corrects the bias each
quantized layer introduces; with these settings the shipped model stays within 0.1 point of FP32
on the validation split:

- ``preset`` ``mixed`` (the default): symmetric weights, asymmetric activations, whose ranges
  then fit the post-SiLU activations (never much below zero) with no code wasted;
- ``fast_bias_correction`` off: the full bias correction, slower to calibrate (minutes) but the
  one that kept accuracy here (the fast one lost 1.2-1.4 points);
- every calibration image is used (``subset_size`` = the set), not NNCF's default 300.

The result is an OpenVINO IR, ``M.openvino.xml`` + ``.bin``, beside ``M.onnx`` by default, with
the ModelSpec in its runtime info, and a JSON sidecar ``M.openvino.json`` naming the ONNX it was
made from (SHA-256), so ``--backend auto`` takes it for that ONNX only
(:mod:`stopsign.edge.backends.auto`). NNCF (``pip install nncf``, the ``cpu-int8`` extra) is needed
to make an NNCF file, never to run one.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stopsign.calibration.calibset import CalibrationSet
from stopsign.calibration.errors import CalibrationError
from stopsign.calibration.qdq import load_model_and_spec
from stopsign.edge.model.artifacts import atomic_write_text, sha256_file
from stopsign.edge.model.openvino_ir import SIDECAR_VERSION, SPEC_RT_KEY, ir_paths_for
from stopsign.edge.model.spec import ModelSpec

PRESETS = ("mixed", "performance")


@dataclass(frozen=True)
class OpenVinoInt8Options:
    preset: str = "mixed"
    fast_bias_correction: bool = False
    max_images: int | None = None  # None: the whole calibration set
    keep_head_float: bool = False  # the Detect head convs (model.24) in float

    def validate(self) -> None:
        if self.preset not in PRESETS:
            raise CalibrationError(f"--preset {self.preset!r}: expected one of {PRESETS}")
        if self.max_images is not None and self.max_images < 1:
            raise CalibrationError(f"--max-images must be >= 1, got {self.max_images}")


@dataclass(frozen=True)
class OpenVinoInt8Result:
    xml: Path
    sidecar: Path
    n_images: int
    seconds: float


def ir_from_qdq(
    model_path: str | Path, int8_path: str | Path, out: str | Path | None = None
) -> OpenVinoInt8Result:
    """The IR of ``int8_path``, a calibrated Q/DQ quantization of ``model_path`` (edge-calibrate qdq),
    with its signed activations rewritten as unsigned. Needs onnx and openvino, not NNCF."""
    try:
        import onnx
        import openvino as ov
    except ImportError as exc:
        raise CalibrationError(f"edge-calibrate openvino --int8 needs openvino and onnx ({exc})") from None
    from stopsign.edge.model.onnx_meta import read_spec_from_onnx
    from stopsign.edge.model.qdq_unsigned import unsigned_activations
    from stopsign.edge.model.spec import ModelSpecError

    model_path, int8_path = Path(model_path), Path(int8_path)
    _, spec = load_model_and_spec(model_path)
    try:
        int8_spec = read_spec_from_onnx(int8_path)
    except (ModelSpecError, FileNotFoundError) as exc:
        raise CalibrationError(str(exc)) from None
    if int8_spec.precision != "int8":
        raise CalibrationError(
            f"--int8 {int8_path}: precision {int8_spec.precision!r}, not an INT8 Q/DQ file"
        )
    if tuple(int8_spec.input_size) != tuple(spec.input_size) or int8_spec.class_names != spec.class_names:
        raise CalibrationError(
            f"--int8 {int8_path}: input {list(int8_spec.input_size)} / classes {int8_spec.class_names} differ "
            f"from {model_path}'s {list(spec.input_size)} / {spec.class_names}: not a quantization of it"
        )
    xml, sidecar = _out_paths(model_path, out)
    started = time.perf_counter()
    proto = onnx.load(str(int8_path))
    changed = unsigned_activations(proto)
    with tempfile.TemporaryDirectory(prefix="edge-calibrate.") as folder:
        rewritten = Path(folder) / "unsigned.onnx"
        onnx.save(proto, str(rewritten))
        model = ov.Core().read_model(str(rewritten))
    quantization = {
        "method": "qdq-unsigned",
        "int8_path": int8_path.name,
        "int8_sha256": sha256_file(int8_path),
        "activation_zero_points_rewritten": changed,
    }
    _save(ov, model, int8_spec.replace(onnx_sha256=None), model_path, xml, sidecar, quantization, started)
    return OpenVinoInt8Result(xml, sidecar, 0, time.perf_counter() - started)


def quantize_openvino(
    model_path: str | Path, calib_dir: str | Path, out: str | Path | None, options: OpenVinoInt8Options
) -> OpenVinoInt8Result:
    """Quantize ``model_path`` (FP32 ONNX with ModelSpec) with NNCF for OpenVINO's CPU plugin.

    ``out``: the ``.xml`` to write (None: ``M.openvino.xml`` beside the ONNX).
    """
    options.validate()
    try:
        import nncf
        import openvino as ov
    except ImportError as exc:
        raise CalibrationError(
            f"edge-calibrate openvino --calib needs openvino and nncf ({exc}): pip install 'stopsign-edge[cpu-int8]'"
        ) from None
    model_path = Path(model_path)
    _, spec = load_model_and_spec(model_path)
    xml, sidecar = _out_paths(model_path, out)
    calib = CalibrationSet.load(calib_dir, spec, limit=options.max_images)
    started = time.perf_counter()
    model = ov.Core().read_model(str(model_path))
    model.reshape([1, 3, *spec.input_size])  # calibration runs batch 1; the backend reshapes per batch
    images = [calib.image(i) for i in range(len(calib))]
    ignored = nncf.IgnoredScope(patterns=[r".*/model\.24/.*"]) if options.keep_head_float else None
    preset = {"mixed": nncf.QuantizationPreset.MIXED, "performance": nncf.QuantizationPreset.PERFORMANCE}
    quantized: Any = nncf.quantize(
        model,
        nncf.Dataset(images),
        preset=preset[options.preset],
        subset_size=len(images),
        fast_bias_correction=options.fast_bias_correction,
        **({"ignored_scope": ignored} if ignored is not None else {}),
    )
    quantization = {
        "method": "nncf",
        "nncf_version": nncf.__version__,
        "preset": options.preset,
        "fast_bias_correction": options.fast_bias_correction,
        "keep_head_float": options.keep_head_float,
        "calibration_images": len(images),
        "calibration_folder": str(Path(calib_dir)),
    }
    _save(ov, quantized, spec.replace(precision="int8", onnx_sha256=None), model_path, xml, sidecar,
          quantization, started)  # fmt: skip
    return OpenVinoInt8Result(xml, sidecar, len(images), time.perf_counter() - started)


def _out_paths(model_path: Path, out: str | Path | None) -> tuple[Path, Path]:
    xml, sidecar = ir_paths_for(model_path) if out is None else (Path(out), Path(out).with_suffix(".json"))
    if xml.suffix != ".xml":
        raise CalibrationError(
            f"--out {xml}: an OpenVINO IR is an .xml file (its weights go to .bin beside it)"
        )
    return xml, sidecar


def _save(
    ov: Any,
    model: Any,
    stored: ModelSpec,
    model_path: Path,
    xml: Path,
    sidecar: Path,
    quantization: dict[str, Any],
    started: float,
) -> None:
    """Write the IR (the ModelSpec in its runtime info), then the sidecar naming ``model_path``."""
    model.set_rt_info(stored.to_json(), SPEC_RT_KEY)
    xml.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(model, str(xml), compress_to_fp16=False)
    same_folder = model_path.parent.resolve() == xml.parent.resolve()
    record = {
        "sidecar_version": SIDECAR_VERSION,
        "model_spec": stored.to_dict(),
        "onnx_path": model_path.name if same_folder else str(model_path),
        "onnx_sha256": sha256_file(model_path),
        "xml_sha256": sha256_file(xml),
        "bin_sha256": sha256_file(xml.with_suffix(".bin")),
        "openvino_version": ov.get_version(),
        "quantization": quantization,
        "seconds": round(time.perf_counter() - started, 1),
    }
    atomic_write_text(sidecar, json.dumps(record, indent=2) + "\n")
