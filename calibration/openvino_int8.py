"""``edge-calibrate openvino``: a CPU INT8 model for OpenVINO, by NNCF post-training quantisation.

The Q/DQ file ``edge-calibrate qdq`` makes is placed for TensorRT (symmetric INT8 at every Conv
input, ranges from ONNX Runtime's calibrators). OpenVINO runs it with its own INT8 kernels and
loses 20 points of mAP@0.5 on the shipped model (``docs/benchmarks.md``). NNCF places the
quantizers the way OpenVINO's CPU plugin executes them and corrects the bias each quantized
layer introduces; with these settings the shipped model stays within 0.1 point of FP32 on the
validation split:

- ``preset`` ``mixed`` (the default): symmetric weights, asymmetric activations, whose ranges
  then fit the post-SiLU activations (never much below zero) with no code wasted;
- ``fast_bias_correction`` off: the full bias correction, slower to calibrate (minutes) but the
  one that kept accuracy here (the fast one lost 1.2-1.4 points);
- every calibration image is used (``subset_size`` = the set), not NNCF's default 300.

The result is an OpenVINO IR, ``M.openvino.xml`` + ``.bin``, beside ``M.onnx`` by default, with
the ModelSpec in its runtime info, and a JSON sidecar ``M.openvino.json`` naming the ONNX it was
made from (SHA-256), so ``--backend auto`` takes it for that ONNX only
(:mod:`stopsign.edge.backends.auto`). NNCF (``pip install nncf``, the ``cpu-int8`` extra) is needed
to make the file, never to run it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stopsign.calibration.calibset import CalibrationSet
from stopsign.calibration.errors import CalibrationError
from stopsign.calibration.qdq import load_model_and_spec
from stopsign.edge.artifacts import atomic_write_text, sha256_file
from stopsign.edge.openvino_ir import SIDECAR_VERSION, SPEC_RT_KEY, ir_paths_for

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


def quantize_openvino(
    model_path: str | Path, calib_dir: str | Path, out: str | Path | None, options: OpenVinoInt8Options
) -> OpenVinoInt8Result:
    """Quantize ``model_path`` (FP32 ONNX with ModelSpec) for OpenVINO's CPU plugin.

    ``out``: the ``.xml`` to write (None: ``M.openvino.xml`` beside the ONNX).
    """
    options.validate()
    try:
        import nncf
        import openvino as ov
    except ImportError as exc:
        raise CalibrationError(
            f"edge-calibrate openvino needs openvino and nncf ({exc}): pip install 'stopsign-edge[cpu-int8]'"
        ) from None
    model_path = Path(model_path)
    _, spec = load_model_and_spec(model_path)
    xml, sidecar = ir_paths_for(model_path) if out is None else (Path(out), Path(out).with_suffix(".json"))
    if xml.suffix != ".xml":
        raise CalibrationError(
            f"--out {xml}: an OpenVINO IR is an .xml file (its weights go to .bin beside it)"
        )
    calib = CalibrationSet.load(calib_dir, spec, limit=options.max_images)
    started = time.perf_counter()
    core = ov.Core()
    model = core.read_model(str(model_path))
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
    stored = spec.replace(precision="int8", onnx_sha256=None)
    quantized.set_rt_info(stored.to_json(), SPEC_RT_KEY)
    xml.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(quantized, str(xml), compress_to_fp16=False)
    seconds = time.perf_counter() - started
    record = {
        "sidecar_version": SIDECAR_VERSION,
        "model_spec": stored.to_dict(),
        "onnx_path": model_path.name
        if model_path.parent.resolve() == xml.parent.resolve()
        else str(model_path),
        "onnx_sha256": sha256_file(model_path),
        "xml_sha256": sha256_file(xml),
        "bin_sha256": sha256_file(xml.with_suffix(".bin")),
        "openvino_version": ov.get_version(),
        "nncf_version": nncf.__version__,
        "quantization": {
            "preset": options.preset,
            "fast_bias_correction": options.fast_bias_correction,
            "keep_head_float": options.keep_head_float,
            "calibration_images": len(images),
            "calibration_folder": str(Path(calib_dir)),
        },
        "seconds": round(seconds, 1),
    }
    atomic_write_text(sidecar, json.dumps(record, indent=2) + "\n")
    return OpenVinoInt8Result(xml, sidecar, len(images), seconds)
