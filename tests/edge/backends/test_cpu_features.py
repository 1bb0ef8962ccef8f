"""Which CPUs have an INT8 dot-product instruction, from /proc/cpuinfo texts of real machines."""

from __future__ import annotations

import pytest

from stopsign.edge.backends.cpu_features import cpu_flags, has_int8_dot_product

AVX2_EPYC = "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu sse sse2 avx avx2 fma\n"
SAPPHIRE_RAPIDS = "processor\t: 0\nflags\t\t: avx2 avx512f avx512_vnni amx_int8 amx_tile\n"
ALDER_LAKE = "processor\t: 0\nflags\t\t: avx2 avx_vnni\n"
ORIN = "processor\t: 0\nBogoMIPS\t: 62.50\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 asimddp\n"
CORTEX_A57 = "processor\t: 0\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32\n"  # Jetson Nano


@pytest.mark.parametrize(
    ("cpuinfo", "expected"),
    [
        (AVX2_EPYC, False),
        (SAPPHIRE_RAPIDS, True),
        (ALDER_LAKE, True),
        (ORIN, True),
        (CORTEX_A57, False),
        ("processor\t: 0\nmodel name\t: no flags line\n", None),  # unknown: auto keeps its default
    ],
)
def test_int8_dot_product_from_cpuinfo(cpuinfo: str, expected: bool | None) -> None:
    assert has_int8_dot_product(cpu_flags(cpuinfo)) is expected


def test_this_machine_reads_without_error() -> None:
    flags = cpu_flags()
    assert flags is None or len(flags) > 0
