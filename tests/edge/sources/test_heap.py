"""The heap's free pages go back to the kernel after a pipeline teardown (glibc ``malloc_trim``)."""

from __future__ import annotations

import ctypes
import platform
import time

import pytest

from stopsign.edge.sources import gst as gst_module
from stopsign.edge.sources import opencv as opencv_module
from stopsign.edge.sources.base import SourceOptions
from stopsign.edge.sources.factory import open_source
from stopsign.edge.sources.heap import release_free_heap
from tests.edge.helpers import requires_gstreamer

glibc_only = pytest.mark.skipif(
    platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's; other C libraries keep freed pages"
)


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc/self/status")


@glibc_only
def test_freed_blocks_below_a_live_one_are_given_back() -> None:
    # 40 MB of 1 KB blocks (heap, not mmap), all freed but the last: the free space sits below a
    # block in use, so free() alone cannot shrink the heap. That is a torn-down pipeline's shape.
    libc = ctypes.CDLL(None)
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    blocks = [libc.malloc(1024) for _ in range(40_000)]
    for block in blocks:
        ctypes.memset(block, 1, 1024)
    for block in blocks[:-1]:
        libc.free(block)
    try:
        before = rss_mb()
        assert release_free_heap() is True
        given_back = before - rss_mb()
    finally:
        libc.free(blocks[-1])
    assert given_back > 20, f"RSS fell only {given_back:.1f} MB after malloc_trim"


def test_without_malloc_trim_it_does_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    from stopsign.edge.sources import heap

    monkeypatch.setattr(heap, "_malloc_trim", lambda: None)
    assert release_free_heap() is False


@requires_gstreamer
@pytest.mark.gstreamer
def test_teardowns_release_the_heap_once_the_pipeline_is_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    holder: dict[str, object] = {}
    calls: list[bool] = []

    def release() -> bool:
        calls.append(holder["source"]._gen is None)  # type: ignore[attr-defined]
        return True

    monkeypatch.setattr(gst_module, "release_free_heap", release)
    options = SourceOptions(stall_timeout_s=0.3, backoff_initial_s=0.1)
    source = open_source(
        "gst://videotestsrc is-live=true ! video/x-raw,width=64,height=48,framerate=30/1 ! identity name=gate",
        options,
        lambda kind, fields: None,
    )
    holder["source"] = source
    try:
        assert source.read(1.0) is not None
        assert calls == []  # never on the frame path
        source.pipeline.get_by_name("gate").set_property("drop-probability", 1.0)
        deadline = time.monotonic() + 3
        while not calls and time.monotonic() < deadline:
            source.read(0.05)
        assert calls == [True], "a stall's teardown releases the heap, after the pipeline is dropped"
        deadline, restored = time.monotonic() + 5, None
        while restored is None and time.monotonic() < deadline:
            restored = source.read(0.05)  # the rebuilt pipeline (drop-probability back at 0)
        assert restored is not None and calls == [True]
    finally:
        source.close()
    assert calls == [True, True], "closing releases the heap too"


def test_the_opencv_fallback_releases_the_heap_when_its_capture_is_dropped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests.edge.sources.test_opencv_reconnect import DRIVE_VIDEO, read_all

    calls: list[bool] = []
    source = opencv_module.OpenCvSource(str(DRIVE_VIDEO), live=False)
    monkeypatch.setattr(
        opencv_module, "release_free_heap", lambda: calls.append(source._capture is None) or True
    )
    source.open()
    read_all(source, 5)
    assert calls == []  # never on the frame path
    source.close()
    assert calls == [True]
