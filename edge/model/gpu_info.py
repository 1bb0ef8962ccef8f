"""Name and compute capability of the CUDA GPU, without requiring any particular CUDA binding.

Tried in order: cuda-python (``cuda.bindings.runtime`` or the older ``cuda.cudart``), torch,
``nvidia-smi``. Each is optional; the first that answers wins. A Jetson has cuda-python from the
``trt`` extra; a desktop usually has nvidia-smi.
"""

from __future__ import annotations

import importlib
import shutil
import subprocess
from dataclasses import dataclass


@dataclass(frozen=True)
class GpuInfo:
    """``compute_capability`` as "major.minor" (e.g. "8.7" for Jetson Orin); ``source`` says who answered."""

    name: str
    compute_capability: str
    source: str


def normalize_compute_capability(value: str | tuple[int, int] | list[int]) -> str:
    """ "8.7", (8, 7), [8, 7] or "sm_87" -> "8.7"; a clear error for anything else."""
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return f"{int(value[0])}.{int(value[1])}"
    text = str(value).strip()
    if text.startswith("sm_") and text[3:].isdigit() and len(text) >= 5:
        return f"{text[3:-1]}.{text[-1]}"
    parts = text.split(".")
    if len(parts) == 2 and all(p.isdigit() for p in parts):
        return f"{int(parts[0])}.{int(parts[1])}"
    raise ValueError(f"compute capability must look like '8.7' or (8, 7), got {value!r}")


def _from_cuda_python(device: int) -> GpuInfo | None:
    for module_name in ("cuda.bindings.runtime", "cuda.cudart"):
        try:
            cudart = importlib.import_module(module_name)
        except ImportError:
            continue
        error, props = cudart.cudaGetDeviceProperties(device)
        if int(error) != 0:
            return None
        name = props.name.decode(errors="replace") if isinstance(props.name, bytes) else str(props.name)
        return GpuInfo(name.strip("\x00 "), f"{props.major}.{props.minor}", module_name)
    return None


def _from_torch(device: int) -> GpuInfo | None:
    try:
        torch = importlib.import_module("torch")
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    props = torch.cuda.get_device_properties(device)
    return GpuInfo(props.name, f"{props.major}.{props.minor}", "torch")


def _from_nvidia_smi(device: int) -> GpuInfo | None:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    query = [exe, f"--id={device}", "--query-gpu=name,compute_cap", "--format=csv,noheader"]
    result = subprocess.run(query, capture_output=True, text=True, timeout=20, check=False)
    if result.returncode != 0 or "," not in result.stdout:
        return None
    name, cap = result.stdout.strip().rsplit(",", 1)
    return GpuInfo(name.strip(), normalize_compute_capability(cap.strip()), "nvidia-smi")


def gpu_info(device: int = 0) -> GpuInfo:
    """The GPU's name and compute capability; RuntimeError naming what was tried when none answers."""
    for probe in (_from_cuda_python, _from_torch, _from_nvidia_smi):
        info = probe(device)
        if info is not None:
            return info
    raise RuntimeError(
        f"cannot find CUDA device {device}: tried cuda-python, torch and nvidia-smi "
        "(install the 'trt' extra: pip install 'stopsign-edge[trt]')"
    )
