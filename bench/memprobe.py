"""Where a long run's memory goes: the opt-in probes of ``bench/soak.py``.

Views of one process, each answering a different "what grows?":

- ``rss_breakdown``: the kernel's view (``/proc/self/status``): anonymous memory (heap, mmaps)
  apart from file-backed pages (shared libraries paged in as new code runs: not a leak).
- ``malloc_info``: glibc's view of its own heap, per arena: bytes taken from the system, bytes
  free inside it (fast bins + other bins + the top chunk) and large blocks served by ``mmap``.
  In-use flat while system bytes grow is allocator fragmentation; in-use growing is a native
  allocation that is kept (GStreamer, ONNX Runtime, OpenVINO, numpy).
- ``sys.getallocatedblocks``: Python's live object count; its small-object allocator takes its
  own arenas with mmap, outside malloc_info's view.
- ``TracemallocProbe``: Python's view: the allocation sites (by traceback) whose live bytes grew
  since a baseline snapshot. A growing Python container shows here by its line.
- ``MemrayProbe``: memray's native mode (optional, ``pip install memray``): every native
  allocation made after the baseline and still alive at the end, by native + Python stack.

``ProbedSource`` wraps the soak's source and calls a ``BlockProbe`` every ``block`` frames,
in the loop's own thread, so each row belongs to an exact frame count.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import linecache
import os
import sys
import sysconfig
import time
import tracemalloc
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stopsign.edge.sources.base import Source
from stopsign.edge.sources.heap import release_free_heap
from stopsign.edge.vision.frame import Frame

MB = 2**20
REPO = Path(__file__).resolve().parent.parent
STDLIB = sysconfig.get_paths()["stdlib"]


class MallocInfoError(RuntimeError):
    """``malloc_info`` is missing (not glibc) or wrote something this parser does not know."""


# --- the kernel's view --------------------------------------------------------------------------


def rss_breakdown(status_path: str | Path = "/proc/self/status") -> dict[str, float]:
    """RSS and its anonymous / file-backed / shared-memory parts, in MB (Linux /proc)."""
    wanted = {
        "VmRSS": "rss_mb",
        "RssAnon": "rss_anon_mb",
        "RssFile": "rss_file_mb",
        "RssShmem": "rss_shmem_mb",
    }
    out: dict[str, float] = {}
    for line in Path(status_path).read_text(encoding="ascii").splitlines():
        key, _, value = line.partition(":")
        if key in wanted:
            out[wanted[key]] = round(int(value.split()[0]) / 1024, 2)  # kB -> MB
    missing = [name for name in wanted if wanted[name] not in out]
    if missing:
        raise RuntimeError(f"{status_path} has no {missing} (a Linux kernel older than 4.5?)")
    return out


# --- glibc's view -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ArenaInfo:
    """One malloc arena (``nr`` 0 is the main, ``brk`` heap). Bytes.

    ``system``: taken from the kernel; ``fast_free``/``rest_free``: free chunks in fast bins and in
    the other bins, the top chunk included. What remains is in use by the program."""

    nr: int
    system: int
    max_system: int
    fast_free: int
    rest_free: int

    @property
    def free(self) -> int:
        return self.fast_free + self.rest_free

    @property
    def in_use(self) -> int:
        return self.system - self.free


@dataclass(frozen=True)
class MallocInfo:
    """The whole of ``malloc_info``: the arenas, and the blocks glibc served with their own mmap
    (``mmap_count``, ``mmap_bytes``: large allocations, above ``M_MMAP_THRESHOLD``)."""

    arenas: list[ArenaInfo]
    mmap_count: int
    mmap_bytes: int

    @property
    def system(self) -> int:
        return sum(arena.system for arena in self.arenas)

    @property
    def free(self) -> int:
        return sum(arena.free for arena in self.arenas)

    @property
    def in_use(self) -> int:
        """Bytes the program holds from malloc: arena chunks in use plus the mmap'd blocks."""
        return sum(arena.in_use for arena in self.arenas) + self.mmap_bytes

    def to_dict(self) -> dict[str, Any]:
        """MB figures for a summary JSON, the totals first, then one row per arena."""
        return {
            "arenas": len(self.arenas),
            "system_mb": round(self.system / MB, 2),
            "in_use_mb": round(self.in_use / MB, 2),
            "free_mb": round(self.free / MB, 2),
            "mmap_count": self.mmap_count,
            "mmap_mb": round(self.mmap_bytes / MB, 2),
            "per_arena": [
                {
                    "nr": a.nr,
                    "system_mb": round(a.system / MB, 2),
                    "in_use_mb": round(a.in_use / MB, 2),
                    "free_mb": round(a.free / MB, 2),
                }
                for a in self.arenas
            ],
        }


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    if not hasattr(libc, "malloc_info"):
        raise MallocInfoError("this C library has no malloc_info (it is glibc's; musl and others lack it)")
    libc.open_memstream.restype = ctypes.c_void_p
    libc.open_memstream.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_size_t)]
    libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
    libc.fclose.argtypes = [ctypes.c_void_p]
    libc.free.argtypes = [ctypes.c_void_p]
    return libc


def malloc_info_xml() -> str:
    """The XML that glibc's ``malloc_info(0, fp)`` writes, through an in-memory stream."""
    libc = _libc()
    buffer, size = ctypes.c_void_p(), ctypes.c_size_t()
    stream = libc.open_memstream(ctypes.byref(buffer), ctypes.byref(size))
    if not stream:
        raise MallocInfoError(f"open_memstream failed: {os.strerror(ctypes.get_errno())}")
    status = libc.malloc_info(0, stream)
    libc.fclose(stream)  # flushes: buffer and size are valid only after this
    try:
        if status != 0:
            raise MallocInfoError(f"malloc_info returned {status}: {os.strerror(ctypes.get_errno())}")
        return ctypes.string_at(buffer, size.value).decode("ascii")
    finally:
        libc.free(buffer)


def _sized(element: ET.Element, tag: str, kind: str, attribute: str = "size") -> int:
    found = element.find(f"{tag}[@type='{kind}']")
    if found is None or attribute not in found.attrib:
        raise MallocInfoError(f"malloc_info XML: no <{tag} type={kind!r} {attribute}=...> in <{element.tag}>")
    return int(found.attrib[attribute])


def parse_malloc_info(xml: str) -> MallocInfo:
    """``malloc_info``'s XML (glibc 2.10+ layout) -> MallocInfo; a clear error on anything else."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise MallocInfoError(f"malloc_info output is not XML: {exc}") from exc
    if root.tag != "malloc":
        raise MallocInfoError(f"malloc_info XML: root element <{root.tag}>, expected <malloc>")
    arenas = [
        ArenaInfo(
            nr=int(heap.attrib.get("nr", index)),
            system=_sized(heap, "system", "current"),
            max_system=_sized(heap, "system", "max"),
            fast_free=_sized(heap, "total", "fast"),
            rest_free=_sized(heap, "total", "rest"),
        )
        for index, heap in enumerate(root.findall("heap"))
    ]
    if not arenas:
        raise MallocInfoError("malloc_info XML: no <heap> (arena) elements")
    return MallocInfo(arenas, _sized(root, "total", "mmap", "count"), _sized(root, "total", "mmap"))


def malloc_info() -> MallocInfo:
    return parse_malloc_info(malloc_info_xml())


def malloc_trim() -> bool:
    """Give free heap memory back to the kernel (glibc ``malloc_trim(0)``, as a source does after a
    teardown); True when some was."""
    return release_free_heap()


# --- Python's view ------------------------------------------------------------------------------


def _short(filename: str) -> str:
    """A traceback path without this machine's prefix: relative to the repository, the
    site-packages folder or the standard library."""
    for prefix in (str(REPO) + "/", STDLIB + "/"):
        if filename.startswith(prefix):
            return filename[len(prefix) :]
    _, sep, tail = filename.rpartition("site-packages/")
    return tail if sep else filename


@dataclass
class TracemallocProbe:
    """Live Python allocations by traceback, diffed against a baseline snapshot.

    ``frames``: traceback depth kept per allocation (deeper tells containers apart, costs memory);
    ``top``: growing sites reported per snapshot."""

    frames: int = 12
    top: int = 10
    _baseline: tracemalloc.Snapshot | None = field(default=None, init=False, repr=False)

    def start(self) -> None:
        if self.frames < 1:
            raise ValueError(f"tracemalloc frames must be >= 1, not {self.frames}")
        tracemalloc.start(self.frames)

    def _snapshot(self) -> tracemalloc.Snapshot:
        # The probe's own bookkeeping is not the program's growth.
        return tracemalloc.take_snapshot().filter_traces(
            [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, linecache.__file__)]
        )

    def set_baseline(self) -> None:
        self._baseline = self._snapshot()

    def report(self) -> dict[str, Any]:
        """The top growing sites since the baseline, and tracemalloc's own cost (it is in RSS)."""
        if self._baseline is None:
            raise RuntimeError("TracemallocProbe.report() before set_baseline()")
        started = time.monotonic()
        snapshot = self._snapshot()
        all_diffs = snapshot.compare_to(
            self._baseline, "traceback"
        )  # sorted by abs(size_diff), largest first
        diffs = [d for d in all_diffs if d.size_diff > 0]
        current, peak = tracemalloc.get_traced_memory()
        return {
            "traced_mb": round(current / MB, 2),
            "traced_peak_mb": round(peak / MB, 2),
            "tracemalloc_overhead_mb": round(tracemalloc.get_tracemalloc_memory() / MB, 2),
            "growth_mb": round(sum(d.size_diff for d in all_diffs) / MB, 3),
            "snapshot_s": round(time.monotonic() - started, 2),
            "top_growing": [
                {
                    "size_diff_kb": round(d.size_diff / 1024, 1),
                    "count_diff": d.count_diff,
                    "size_kb": round(d.size / 1024, 1),
                    # The allocating line first, then its callers.
                    "traceback": [f"{_short(f.filename)}:{f.lineno}" for f in reversed(d.traceback)],
                }
                for d in diffs[: self.top]
            ],
        }

    @staticmethod
    def stop() -> None:
        tracemalloc.stop()


# --- memray's native view -----------------------------------------------------------------------

# Frames of the allocator itself, skipped when naming who allocated.
_ALLOCATOR_FRAMES = ("malloc", "calloc", "realloc", "posix_memalign", "aligned_alloc", "memalign", "mmap",
                     "operator new", "default_malloc", "default_calloc", "g_malloc", "g_malloc0",
                     "g_slice_alloc", "PyDataMem_UserNEW", "_PyMem_RawMalloc", "_PyObject_Malloc")  # fmt: skip


@dataclass
class MemrayProbe:
    """memray in native mode from the baseline to the end; ``leaked(top)``: allocations made after
    the baseline and still alive at the end, by stack (native frames first)."""

    path: Path
    _tracker: Any = field(default=None, init=False, repr=False)

    def start(self) -> None:
        try:
            import memray
        except ImportError as exc:
            raise RuntimeError("--memray needs memray: pip install 'stopsign-edge[memory]'") from exc
        self.path.unlink(missing_ok=True)
        self._tracker = memray.Tracker(
            str(self.path), native_traces=True, file_format=memray.FileFormat.AGGREGATED_ALLOCATIONS
        )
        self._tracker.__enter__()

    def stop(self) -> None:
        if self._tracker is not None:
            self._tracker.__exit__(None, None, None)
            self._tracker = None

    def leaked(self, top: int = 10, depth: int = 8) -> list[dict[str, Any]]:
        import memray

        records = memray.FileReader(str(self.path)).get_leaked_allocation_records(merge_threads=True)
        rows = []
        for record in sorted(records, key=lambda r: r.size, reverse=True)[:top]:
            stack = [(fn, _short(fl), ln) for fn, fl, ln in record.hybrid_stack_trace(max_stacks=depth + 12)]
            callers = [s for s in stack if not any(s[0].startswith(a) for a in _ALLOCATOR_FRAMES)]
            rows.append({
                "size_kb": round(record.size / 1024, 1), "allocations": record.n_allocations,
                "allocator": str(record.allocator).rsplit(".", 1)[-1],
                "stack": [f"{fn} {fl}:{ln}" if ln else fn for fn, fl, ln in callers[:depth]],
            })  # fmt: skip
        return rows


# --- per block ----------------------------------------------------------------------------------


@dataclass
class BlockProbe:
    """What is recorded every ``block`` frames; the first block's end is the baseline (warm-up).

    ``native``: malloc_info per block; ``trim``: also ``malloc_trim(0)`` after the reading (tells
    free-but-resident heap from held memory by how much RSS drops; it changes the run, so opt-in)."""

    block: int
    native: bool = True
    trim: bool = False
    tracemalloc: TracemallocProbe | None = None
    memray: MemrayProbe | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)

    def start(self) -> None:
        if self.block < 1:
            raise ValueError(f"probe block must be >= 1 frame, not {self.block}")
        if self.tracemalloc is not None:
            self.tracemalloc.start()

    def __call__(self, frames: int) -> None:
        # Python's small-object allocator serves its own mmap'd arenas, which malloc_info does not
        # see; its live block count is the cheap sign of Python objects piling up.
        row: dict[str, Any] = {"frames": frames, **rss_breakdown(), "python_blocks": sys.getallocatedblocks()}
        if self.native:
            row["malloc"] = malloc_info().to_dict()
        baseline = not self.rows
        if self.tracemalloc is not None:
            if baseline:
                self.tracemalloc.set_baseline()
            else:
                row["tracemalloc"] = self.tracemalloc.report()
        if self.trim:
            malloc_trim()
            row["rss_after_trim_mb"] = rss_breakdown()["rss_mb"]
        if baseline and self.memray is not None:
            self.memray.start()
        self.rows.append(row)

    def finish(self, top: int = 10) -> dict[str, Any]:
        """Stops the tracers; memray's surviving allocations (when it ran) for the summary."""
        out: dict[str, Any] = {}
        if self.memray is not None and self.memray._tracker is not None:
            self.memray.stop()
            out["memray_leaked_top"] = self.memray.leaked(top)
            out["memray_file"] = str(self.memray.path)
        if self.tracemalloc is not None:
            self.tracemalloc.stop()
        return out


class ProbedSource(Source):
    """Passes frames through and calls ``probe(frames)`` after every ``every`` frames delivered."""

    def __init__(self, inner: Source, every: int, probe: Callable[[int], None]) -> None:
        self._inner, self._every, self._probe = inner, every, probe
        self.frames = 0

    def open(self) -> None:
        self._inner.open()
        self.live, self.description = self._inner.live, self._inner.description

    def read(self, timeout_s: float) -> Frame | None:
        frame = self._inner.read(timeout_s)
        if frame is not None:
            self.frames += 1
            if self.frames % self._every == 0:
                self._probe(self.frames)
        return frame

    @property
    def eos(self) -> bool:
        return self._inner.eos

    @property
    def dropped(self) -> int:
        return self._inner.dropped

    @property
    def state(self) -> str:
        return self._inner.state

    @property
    def fps(self) -> float | None:
        return self._inner.fps

    def close(self) -> None:
        self._inner.close()
