"""What the CPU can do that changes which backend is fastest here: an INT8 dot-product instruction.

OpenVINO's INT8 kernels are fast where the CPU multiplies and sums int8 in one instruction (x86:
AVX-512 VNNI, AVX-VNNI, AMX; Arm: the dot-product extension). With AVX2 only, they go through
``vpmaddubsw``, whose int16 sums saturate: on this project's AVX2-only development VM the INT8 IR
is both slower than ONNX Runtime FP32 (docs/benchmarks.md, issue 33) and off the recorded outputs
(docs/int8.md, "INT8 on AVX2 CPUs"). ``--backend auto`` reads this to choose.
"""

from __future__ import annotations

from pathlib import Path

# /proc/cpuinfo names: x86 "flags", Arm "Features" (asimddp: SDOT/UDOT).
INT8_DOT_PRODUCT_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8", "asimddp")
CPUINFO = Path("/proc/cpuinfo")


def cpu_flags(cpuinfo: str | None = None) -> frozenset[str] | None:
    """The first processor's feature flags from ``cpuinfo`` (default: this machine's), or None
    where the text has no flags line (not Linux, or an unreadable file)."""
    if cpuinfo is None:
        try:
            cpuinfo = CPUINFO.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return None


def has_int8_dot_product(flags: frozenset[str] | None) -> bool | None:
    """True or False from known flags; None when they are unknown (the caller keeps its default)."""
    if flags is None:
        return None
    return any(flag in flags for flag in INT8_DOT_PRODUCT_FLAGS)
