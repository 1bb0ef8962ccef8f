"""RSS over many open/read/close cycles of one source: does building and tearing down a GStreamer
pipeline leak, and what does giving the freed heap back cost?

    MALLOC_ARENA_MAX=2 .venv/bin/python bench/source_rebuilds.py --cycles 3000 --frames 2
    MALLOC_ARENA_MAX=2 .venv/bin/python bench/source_rebuilds.py --cycles 3000 --frames 2 --keep-free-heap

Prints the process's RSS every ``--cycles / 6`` cycles (the first rows include the warm-up:
plugin loading, allocator arenas), then how long the teardown's ``malloc_trim`` took
(``edge/sources/heap.py``). ``--keep-free-heap`` is the baseline without it: run both, one after
the other or one per core, and compare the RSS rows.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from stopsign.edge.cli.machine import rss_mb
from stopsign.edge.sources import gst as gst_source
from stopsign.edge.sources.base import SourceOptions
from stopsign.edge.sources.factory import make_source

REPO = Path(__file__).resolve().parent.parent


def timed_release(durations_ms: list[float], keep: bool) -> Callable[[], bool]:
    """The source's heap release, timed (or skipped, for the baseline)."""
    release = gst_source.release_free_heap

    def run() -> bool:
        if keep:
            return False
        start = time.perf_counter()
        gave_back = release()
        durations_ms.append((time.perf_counter() - start) * 1e3)
        return gave_back

    return run


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--source", default=f"drive://{REPO / 'samples' / 'drives' / 'day_approach'}")
    parser.add_argument("--cycles", type=int, default=3000)
    parser.add_argument("--frames", type=int, default=2, help="frames read per cycle")
    parser.add_argument(
        "--keep-free-heap", action="store_true", help="baseline: no malloc_trim after a teardown"
    )
    args = parser.parse_args()
    if args.cycles < 1 or args.frames < 0:
        parser.error(f"--cycles must be >= 1 and --frames >= 0 (got {args.cycles}, {args.frames})")
    release_ms: list[float] = []
    gst_source.release_free_heap = timed_release(release_ms, args.keep_free_heap)
    every = max(1, args.cycles // 6)
    for cycle in range(args.cycles + 1):
        if cycle % every == 0:
            print(f"cycle {cycle}: RSS {rss_mb():.1f} MB", flush=True)
        source = make_source(args.source, SourceOptions(), lambda _kind, _fields: None)
        source.open()
        for _ in range(args.frames):
            source.read(1.0)
        source.close()
    if args.keep_free_heap:
        print("heap release after a teardown: off (--keep-free-heap)")
    elif release_ms:
        ordered = sorted(release_ms)
        p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
        print(f"heap release after a teardown, {len(ordered)} times: mean {statistics.fmean(ordered):.2f} ms, "
              f"p99 {p99:.2f} ms, max {ordered[-1]:.2f} ms")  # fmt: skip
    else:
        print("heap release after a teardown: never called (this source is not a GStreamer one)")


if __name__ == "__main__":
    main()
