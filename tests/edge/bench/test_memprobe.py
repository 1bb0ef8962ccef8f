"""bench/memprobe.py: the probes that name what grows in a soak, each on a real call.

glibc's ``malloc_info`` must see memory that the test takes with ``malloc`` and gives back;
tracemalloc's diff must name the line of a list made to grow; memray must name the function that
keeps native buffers; a probed source must take a reading every ``block`` frames.
"""

from __future__ import annotations

import ctypes
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from stopsign.edge.sources.images import ImageFolderSource
from tests.bench_scripts import load_bench_script
from tests.edge.helpers import requires_gstreamer

REPO = Path(__file__).resolve().parents[3]
memprobe = load_bench_script("memprobe")
MB = 2**20

TWO_ARENAS = """<malloc version="1">
<heap nr="0"><sizes><size from="17" to="32" total="64" count="2"/></sizes>
<total type="fast" count="2" size="64"/><total type="rest" count="3" size="1000"/>
<system type="current" size="10000"/><system type="max" size="12000"/>
<aspace type="total" size="10000"/><aspace type="mprotect" size="10000"/></heap>
<heap nr="1"><sizes></sizes>
<total type="fast" count="0" size="0"/><total type="rest" count="1" size="500"/>
<system type="current" size="4000"/><system type="max" size="4000"/>
<aspace type="total" size="4000"/><aspace type="mprotect" size="4000"/><aspace type="subheaps" size="1"/></heap>
<total type="fast" count="2" size="64"/><total type="rest" count="4" size="1500"/>
<total type="mmap" count="2" size="300000"/>
<system type="current" size="14000"/><system type="max" size="16000"/>
<aspace type="total" size="14000"/><aspace type="mprotect" size="14000"/>
</malloc>"""


def test_the_parser_reads_arenas_free_and_mmap_blocks() -> None:
    info = memprobe.parse_malloc_info(TWO_ARENAS)
    assert [(a.nr, a.system, a.free, a.in_use) for a in info.arenas] == [
        (0, 10000, 1064, 8936),
        (1, 4000, 500, 3500),
    ]
    assert (info.system, info.free, info.mmap_count, info.mmap_bytes) == (14000, 1564, 2, 300000)
    assert info.in_use == 8936 + 3500 + 300000  # arena chunks in use and the mmap'd blocks
    assert info.to_dict()["arenas"] == 2 and len(info.to_dict()["per_arena"]) == 2


@pytest.mark.parametrize(
    ("xml", "names"),
    [
        ("not xml at all", "not XML"),
        ("<mallinfo/>", "<mallinfo>"),
        ('<malloc version="1"><total type="mmap" count="0" size="0"/></malloc>', "no <heap>"),
        (TWO_ARENAS.replace('<total type="rest" count="1" size="500"/>', ""), "type='rest'"),
        (TWO_ARENAS.replace('<total type="mmap" count="2" size="300000"/>', ""), "type='mmap'"),
    ],
)
def test_the_parser_says_what_is_missing(xml: str, names: str) -> None:
    with pytest.raises(memprobe.MallocInfoError, match=names):
        memprobe.parse_malloc_info(xml)


def test_malloc_info_sees_memory_taken_with_malloc_and_given_back() -> None:
    libc = ctypes.CDLL(None)
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
    count, size = 40, 100_000  # under glibc's default mmap threshold: from an arena
    before = memprobe.malloc_info()
    blocks = [libc.malloc(size) for _ in range(count)]
    try:
        for block in blocks:
            libc.memset(block, 1, size)
        held = memprobe.malloc_info()
    finally:
        for block in blocks:
            libc.free(block)
    after = memprobe.malloc_info()
    taken = count * size
    # Within 5 %: the process's other threads (a test worker keeps some from earlier tests) and the
    # XML parsing itself take and give back a few hundred bytes between the readings.
    assert taken * 0.95 <= held.in_use - before.in_use < taken + 1 * MB, (before, held)
    assert held.in_use - after.in_use >= taken * 0.95, (held, after)
    # Freed, the memory stays in glibc's heap as free chunks (or goes back to the kernel).
    assert after.free + (held.system - after.system) >= taken * 0.95


def test_rss_breakdown_parts_add_up_and_a_foreign_file_is_named(tmp_path: Path) -> None:
    parts = memprobe.rss_breakdown()
    assert parts["rss_mb"] > 0
    assert abs(parts["rss_mb"] - parts["rss_anon_mb"] - parts["rss_file_mb"] - parts["rss_shmem_mb"]) < 0.5
    status = tmp_path / "status"
    status.write_text("Name:\tpython\nVmRSS:\t  1000 kB\n", encoding="ascii")
    with pytest.raises(RuntimeError, match="RssAnon"):
        memprobe.rss_breakdown(status)


def grow(kept: list[bytes], n: int) -> None:
    for index in range(n):
        kept.append(bytes([index % 251]) * 1024)  # the line the probe must name


def churn(n: int) -> None:
    for index in range(n):
        _ = bytes([index % 251]) * 1024  # made and dropped: no growth


def test_tracemalloc_diff_names_the_line_of_a_growing_list() -> None:
    probe = memprobe.TracemallocProbe(frames=4, top=5)
    probe.start()
    try:
        kept: list[bytes] = []
        grow(kept, 100)
        probe.set_baseline()
        churn(3000)
        grow(kept, 2000)
        report = probe.report()
    finally:
        probe.stop()
    top = report["top_growing"][0]
    line = grow.__code__.co_firstlineno + 2
    assert top["traceback"][0] == f"tests/edge/bench/test_memprobe.py:{line}", report["top_growing"]
    assert top["count_diff"] >= 2000 and top["size_diff_kb"] >= 2000
    assert report["growth_mb"] >= 2000 / 1024
    churned = churn.__code__.co_firstlineno + 2
    assert not any(site["traceback"][0].endswith(f":{churned}") for site in report["top_growing"])


def test_tracemalloc_report_needs_a_baseline() -> None:
    probe = memprobe.TracemallocProbe(frames=1)
    with pytest.raises(RuntimeError, match="set_baseline"):
        probe.report()
    with pytest.raises(ValueError, match="frames must be >= 1"):
        memprobe.TracemallocProbe(frames=0).start()


def keep_native(kept: list[np.ndarray]) -> None:
    for _ in range(50):
        kept.append(np.ones(20_000))  # 160 kB of malloc'd numpy data each


def test_memray_names_the_function_that_keeps_native_buffers(tmp_path: Path) -> None:
    pytest.importorskip("memray", reason="memray is in the memory extra (part of dev), not installed here")
    probe = memprobe.MemrayProbe(tmp_path / "native.bin")
    kept: list[np.ndarray] = []
    probe.start()
    try:
        keep_native(kept)
        for _ in range(50):
            np.ones(20_000)  # freed at once: not a survivor
    finally:
        probe.stop()
    top = probe.leaked(top=3, depth=40)[0]
    assert top["size_kb"] >= 50 * 160_000 / 1024 and top["allocations"] == 50
    assert any(frame.startswith("keep_native ") for frame in top["stack"]), top


def test_a_probed_source_reads_every_block(tmp_path: Path) -> None:
    for index in range(5):
        cv2.imwrite(str(tmp_path / f"{index}.png"), np.full((8, 8, 3), index, np.uint8))
    probe = memprobe.BlockProbe(block=2, native=True)
    probe.start()
    source = memprobe.ProbedSource(ImageFolderSource(tmp_path), 2, probe)
    source.open()
    frames = [source.read(0.1) for _ in range(5)]
    assert [f.index for f in frames if f is not None] == [0, 1, 2, 3, 4]
    assert [row["frames"] for row in probe.rows] == [2, 4]
    assert all(
        row["malloc"]["system_mb"] > 0 and row["rss_mb"] > 0 and row["python_blocks"] > 0
        for row in probe.rows
    )
    with pytest.raises(ValueError, match="block must be >= 1"):
        memprobe.BlockProbe(block=0).start()


@requires_gstreamer
def test_soak_writes_the_probe_rows(tiny_onnx: Path, tmp_path: Path, monkeypatch) -> None:
    soak = load_bench_script("soak")
    out = tmp_path / "soak"
    argv = ["soak.py", "--mode", "replay", "--model", str(tiny_onnx), "--frames", "90", "--block", "30",
            "--sample-s", "0.2", "--warmup-s", "0", "--out", str(out), "--malloc-info", "--tracemalloc",
            "--tracemalloc-frames", "1", "--source", f"drive://{REPO / 'samples' / 'drives' / 'day_approach'}"]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    soak.main()
    result = json.loads((out / "soak.json").read_text())
    assert result["event_counts"]["started"] == result["event_counts"]["stopped"] == 1
    rows = result["probes"]
    assert [row["frames"] for row in rows] == [30, 60, 90]
    assert all(row["malloc"]["in_use_mb"] > 0 for row in rows)
    assert "tracemalloc" not in rows[0] and all("top_growing" in row["tracemalloc"] for row in rows[1:])
    lines = (out / "probes.jsonl").read_text().splitlines()
    assert [json.loads(line)["frames"] for line in lines] == [30, 60, 90]


def test_soak_refuses_memray_with_tracemalloc(tiny_onnx: Path, tmp_path: Path, monkeypatch) -> None:
    soak = load_bench_script("soak")
    argv = ["soak.py", "--model", str(tiny_onnx), "--tracemalloc", "--memray", str(tmp_path / "m.bin")]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exit_info:
        soak.main()
    assert exit_info.value.code == 2


def soak_result(path: Path, rss: list[float], block: int = 25_000) -> Path:
    rows = [
        {"frames": block * (i + 1), "rss_mb": mb, "rss_anon_mb": mb - 90, "rss_file_mb": 90.0,
         "malloc": {"in_use_mb": 40.0, "free_mb": 20.0 + i, "system_mb": 60.0 + i}}
        for i, mb in enumerate(rss)
    ]  # fmt: skip
    path.write_text(json.dumps({"probes": rows}), encoding="utf-8")
    return path


def test_memory_slope_fits_per_100k_frames_and_projects_at_30_fps(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    slope_script = load_bench_script("memory_slope")
    # 0.5 MB per 25k frames = 2 MB per 100k frames, from 100 MB at frame 0 of the line.
    result = soak_result(tmp_path / "soak.json", [100.5, 101.0, 101.5, 102.0])
    run = slope_script.Run.load(result, "replay")
    assert run.slope("rss_mb") == pytest.approx(2.0)
    assert run.slope("rss_file_mb") == pytest.approx(0.0, abs=1e-9)
    assert run.slope("heap_free_mb") == pytest.approx(4.0)  # 1 MB per 25k frames
    assert run.projection(8.0) == pytest.approx(100 + 2.0 * 8 * 3600 * 30 / 100_000)
    out_json, png = tmp_path / "slopes.json", tmp_path / "slope.png"
    argv = ["memory_slope.py", str(result), "--labels", "replay", "--json", str(out_json), "--png", str(png)]
    monkeypatch.setattr(sys, "argv", argv)
    slope_script.main()
    assert "| replay | 25,000-100,000 | +2.00 / +2.00 |" in capsys.readouterr().out
    assert json.loads(out_json.read_text())["replay"]["slope_mb_per_100k"]["rss_mb"] == 2.0
    assert png.stat().st_size > 0


def test_memory_slope_of_the_second_half_shows_a_growth_that_levels_off(tmp_path: Path) -> None:
    slope_script = load_bench_script("memory_slope")
    run = slope_script.Run.load(
        soak_result(tmp_path / "soak.json", [100.0, 101.0, 101.5, 101.5, 101.5, 101.5]), "x"
    )
    assert run.slope("rss_mb") > 0.5 and run.slope("rss_mb", late=True) == pytest.approx(0.0, abs=1e-9)
    assert run.projection(24 * 7, late=True) == pytest.approx(101.5)


def test_memory_slope_names_a_result_without_probe_rows(tmp_path: Path, monkeypatch) -> None:
    slope_script = load_bench_script("memory_slope")
    bare = tmp_path / "soak.json"
    bare.write_text(json.dumps({"probes": []}), encoding="utf-8")
    with pytest.raises(ValueError, match="--malloc-info"):
        slope_script.Run.load(bare, "bare")
