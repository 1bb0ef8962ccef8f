"""RSS over many open/read/close cycles of one source: does building and tearing down a GStreamer
pipeline leak?

    MALLOC_ARENA_MAX=2 .venv/bin/python bench/source_rebuilds.py --cycles 3000 --frames 2

Prints the process's RSS every ``--cycles / 6`` cycles (the first rows include the warm-up:
plugin loading, allocator arenas).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from stopsign.edge.cli.machine import rss_mb
from stopsign.edge.sources.base import SourceOptions
from stopsign.edge.sources.factory import make_source

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--source", default=f"drive://{REPO / 'samples' / 'drives' / 'day_approach'}")
    parser.add_argument("--cycles", type=int, default=3000)
    parser.add_argument("--frames", type=int, default=2, help="frames read per cycle")
    args = parser.parse_args()
    every = max(1, args.cycles // 6)
    for cycle in range(args.cycles + 1):
        if cycle % every == 0:
            print(f"cycle {cycle}: RSS {rss_mb():.1f} MB", flush=True)
        source = make_source(args.source, SourceOptions(), lambda _kind, _fields: None)
        source.open()
        for _ in range(args.frames):
            source.read(1.0)
        source.close()


if __name__ == "__main__":
    main()
