"""Soak test of the edge pipeline: RSS, open fds, threads and latency over time -> JSON + PNG.

    .venv/bin/python bench/soak.py --model model.onnx --minutes 30 --out bench/results/soak
    .venv/bin/python bench/soak.py --model small.onnx --frames 1000000 \
        --source drive://samples/drives/day_approach --out runs/soak_1m

Runs ``edge-detect``'s pipeline in this process on a live test source (or --source) and samples
/proc/self every --sample-s seconds; latency p50/p99 come from the 1 Hz heartbeat events.
The summary compares RSS after warm-up with the end and p99 in the first and last fifths.

Two modes. ``--mode live`` (the default) is what a car does: one long-lived source, built once,
delivering at a camera's rate (default a live 720p GStreamer test pattern at 30 fps; any live URI,
such as the project's RTSP camera serving a drive, works). ``--mode replay`` soaks the rebuild
path: a recorded drive (``drive://``, required) is replayed endlessly at full speed: at its end the source is closed and opened again (so the
GStreamer set-up and teardown soak too), frame indices and timestamps carrying on. The summary
adds one row per ``--block`` frames: RSS, fds and threads at the block's end, the median and
worst of the per-second p99 latencies in it, and the events files' size (with rotation at
``--events-max-bytes``).

Finding what grows (opt-in, ``bench/memprobe.py``; each costs time and some memory of its own, so
a run that measures the slope itself leaves them off): at every block's end ``--malloc-info``
records glibc's heap per arena (in use, free, mmap'd), ``--tracemalloc`` the Python allocation
sites whose live bytes grew since the first block's end, ``--memray FILE`` traces native
allocations from the first block's end on and reports those still alive at the end, and
``--malloc-trim`` gives free heap back after each reading (how much RSS drops tells free-but-
resident heap from held memory). The rows go to ``probes.jsonl`` as they are taken and into the
summary JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from tqdm import tqdm

from stopsign.edge.cli.detect import run_detect
from stopsign.edge.cli.detect_config import DetectConfig
from stopsign.edge.cli.machine import process_stats
from stopsign.edge.sources.base import Source, SourceOptions, StatusReport
from stopsign.edge.sources.factory import make_source
from stopsign.edge.vision.frame import NO_TIMESTAMP, Frame

BENCH = Path(__file__).resolve().parent
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))  # the memory probes live in a module beside this script
from memprobe import BlockProbe, MemrayProbe, ProbedSource, TracemallocProbe, rss_breakdown  # noqa: E402


class EndlessReplay(Source):
    """A finite source replayed forever: reopened at its end, indices and timestamps continued."""

    def __init__(self, build: Callable[[], Source]) -> None:
        self._build = build
        self._inner = build()
        self._index_base = 0
        self._pts_base = 0
        self._last: Frame | None = None
        self.replays = 0

    def open(self) -> None:
        self._inner.open()
        self.live, self.description = self._inner.live, f"endless {self._inner.description}"

    def read(self, timeout_s: float) -> Frame | None:
        frame = self._inner.read(timeout_s)
        if frame is None and self._inner.eos:
            self._inner.close()
            last = self._last
            if last is not None:
                self._index_base = last.index + 1
                self._pts_base = (last.pts_ns if last.pts_ns != NO_TIMESTAMP else 0) + 66_666_667
            self._inner = self._build()
            self._inner.open()
            self.replays += 1
            frame = self._inner.read(timeout_s)
        if frame is None:
            return None
        pts = frame.pts_ns + self._pts_base if frame.pts_ns != NO_TIMESTAMP else NO_TIMESTAMP
        # Capture time is now: the replay runs at full speed, not at the recording's pace.
        frame = dataclasses.replace(
            frame, index=frame.index + self._index_base, pts_ns=pts, monotonic_ns=time.monotonic_ns()
        )
        self._last = frame
        return frame

    @property
    def eos(self) -> bool:
        return False

    @property
    def dropped(self) -> int:
        return self._inner.dropped

    def close(self) -> None:
        self._inner.close()


def endless_factory(uri: str, options: SourceOptions, report: StatusReport) -> Source:
    return EndlessReplay(lambda: make_source(uri, options, report))


BEAT_FIELDS = ("monotonic_ns", "frame", "fps", "p50_ms", "p99_ms", "drop_rate")


class Record:
    """Rows appended to a JSON-lines file as they come and read back at the end.

    The soak measures this very process, so its own record must not stay in its memory: kept in
    lists, an hour's 720 samples (440 B each) and 3,600 heartbeats (232 B each, as tuples) held
    1.15 MB more every hour. That grows with time, not frames, so on a busy machine (fewer frames
    an hour) it looked like a per-frame slope of the pipeline (docs/reliability.md)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.unlink(missing_ok=True)
        self._handle: IO[str] = path.open("a", encoding="utf-8")
        self.count = 0

    def append(self, row: dict[str, Any]) -> None:
        self._handle.write(json.dumps(row) + "\n")
        self._handle.flush()
        self.count += 1

    def rows(self) -> list[dict[str, Any]]:
        self._handle.flush()
        return [json.loads(line) for line in self.path.read_text(encoding="utf-8").splitlines()]

    def close(self) -> None:
        self._handle.close()


class HeartbeatFollower:
    """Follows the events file across rotations (as ``tail -F`` does) and records the heartbeats'
    few fields used, so that rotation may drop old files without losing the latency record."""

    def __init__(self, path: Path, record: Record) -> None:
        self.path, self.record = path, record
        self.counts: dict[str, int] = {}  # events by kind (a few kinds: bounded)
        self._handle: IO[str] | None = None
        self._inode: int | None = None
        self._partial = ""

    def poll(self) -> None:
        while True:
            if self._handle is None:
                try:
                    self._handle = self.path.open(encoding="utf-8")
                except FileNotFoundError:
                    return
                self._inode, self._partial = os.fstat(self._handle.fileno()).st_ino, ""
            *lines, self._partial = (self._partial + self._handle.read()).split("\n")
            for line in lines:
                if not line:
                    continue
                event = json.loads(line)
                kind = event.get("event", "?")
                self.counts[kind] = self.counts.get(kind, 0) + 1
                if kind == "heartbeat":
                    self.record.append({key: event.get(key) for key in BEAT_FIELDS})
            try:
                current: int | None = self.path.stat().st_ino
            except FileNotFoundError:
                current = None
            if current == self._inode:
                return
            # Rotated: the writer closed the old file before renaming it, so it has been read whole.
            self._handle.close()
            self._handle = None

    def close(self) -> None:
        self.poll()
        if self._handle is not None:
            self._handle.close()


def events_bytes(events: Path) -> int:
    return sum(p.stat().st_size for p in events.parent.glob(events.name + "*") if p.is_file())


def sample(
    stop: threading.Event,
    every_s: float,
    duration_s: float,
    out: Record,
    events: Path,
    follower: HeartbeatFollower,
) -> None:
    start = time.monotonic()
    total = int(duration_s) if duration_s != float("inf") else None
    with tqdm(total=total, unit="s", desc="soak") as bar:
        while not stop.wait(every_s):
            elapsed = time.monotonic() - start
            follower.poll()
            memory = rss_breakdown()
            out.append({"t_s": round(elapsed, 1), "monotonic_ns": time.monotonic_ns(), **process_stats(),
                        "rss_anon_mb": memory["rss_anon_mb"], "rss_file_mb": memory["rss_file_mb"],
                        "events_bytes": events_bytes(events)})  # fmt: skip
            bar.n = int(elapsed) if total is None else min(int(elapsed), total)
            bar.refresh()
            if elapsed >= duration_s:
                stop.set()


def blocks(samples: list[dict[str, float]], beats: list[dict], block: int) -> list[dict[str, float | None]]:
    """One row per ``block`` frames: the last sample before the block's end, the range of RSS over
    the block's samples (min, median, max: a process that gives freed heap back swings between what
    its pipeline holds and less, so one sample is a phase, the block's max is its envelope), and
    its heartbeats."""
    rows: list[dict[str, float | None]] = []
    if not beats:
        return rows
    end, start_ns = block, 0
    while end <= beats[-1]["frame"] + 1:
        inside = [b for b in beats if end - block <= b["frame"] < end and b.get("p99_ms") is not None]
        end_ns = max((b["monotonic_ns"] for b in beats if b["frame"] < end), default=0)
        before = [s for s in samples if s["monotonic_ns"] <= end_ns] or samples[:1]
        last = before[-1]
        rss = [s["rss_mb"] for s in before if s["monotonic_ns"] > start_ns] or [last["rss_mb"]]
        p99 = [b["p99_ms"] for b in inside]
        rows.append({
            "frames": end,
            "rss_mb": round(last["rss_mb"], 1), "rss_anon_mb": last.get("rss_anon_mb"),
            "rss_block_min_mb": round(min(rss), 2), "rss_block_median_mb": round(statistics.median(rss), 2),
            "rss_block_max_mb": round(max(rss), 2),
            "rss_file_mb": last.get("rss_file_mb"), "fds": last["fds"], "threads": last["threads"],
            "events_bytes": last["events_bytes"],
            "p50_ms_median": round(statistics.median(b["p50_ms"] for b in inside), 2) if inside else None,
            "p99_ms_median": round(statistics.median(p99), 2) if p99 else None,
            "p99_ms_max": round(max(p99), 2) if p99 else None,
        })  # fmt: skip
        end, start_ns = end + block, end_ns
    return rows


def envelope_growth(rows: list[dict[str, float | None]]) -> float | None:
    """RSS growth, in %, from the first block's highest sample to the last block's: the goal's
    measure when RSS swings within a block (``blocks``); None with fewer than two blocks."""
    if len(rows) < 2:
        return None
    first, last = rows[0]["rss_block_max_mb"], rows[-1]["rss_block_max_mb"]
    assert first is not None and last is not None
    return round(100 * (last - first) / first, 2)


def summarise(samples: list[dict[str, float]], beats: list[dict], warmup_s: float) -> dict[str, float | None]:
    after = [s for s in samples if s["t_s"] >= warmup_s] or samples
    p99 = [b["p99_ms"] for b in beats if b.get("p99_ms") is not None]
    fifth = max(1, len(p99) // 5)

    def mean(xs: list[float]) -> float | None:
        return round(sum(xs) / len(xs), 2) if xs else None

    rss0, rss1 = after[0]["rss_mb"], after[-1]["rss_mb"]
    return {
        "rss_after_warmup_mb": round(rss0, 1),
        "rss_end_mb": round(rss1, 1),
        "rss_growth_pct": round(100 * (rss1 - rss0) / rss0, 2),
        "fds_start": after[0]["fds"],
        "fds_end": after[-1]["fds"],
        "threads_start": after[0]["threads"],
        "threads_end": after[-1]["threads"],
        "p99_ms_first_fifth": mean(p99[:fifth]),
        "p99_ms_last_fifth": mean(p99[-fifth:]),
        "heartbeats": len(beats),
    }


def plot(samples: list[dict[str, float]], beats: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(4, 1, figsize=(8, 9), sharex=True)
    t = [s["t_s"] for s in samples]
    for ax, key in zip(axes[:3], ("rss_mb", "fds", "threads")):
        ax.plot(t, [s[key] for s in samples])
        ax.set_ylabel(key)
    t0 = beats[0]["monotonic_ns"] if beats else 0
    bt = [(b["monotonic_ns"] - t0) / 1e9 for b in beats]
    for key in ("p50_ms", "p99_ms"):
        axes[3].plot(bt, [b.get(key) or float("nan") for b in beats], label=key)
    axes[3].set_ylabel("latency ms")
    axes[3].set_xlabel("seconds")
    axes[3].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def make_probe(args: argparse.Namespace, out: Path) -> BlockProbe | None:
    """The probes asked for on the command line, or None (the soak then measures only itself)."""
    if not (args.malloc_info or args.tracemalloc or args.malloc_trim or args.memray):
        return None
    return BlockProbe(
        block=args.block,
        native=args.malloc_info,
        trim=args.malloc_trim,
        tracemalloc=TracemallocProbe(args.tracemalloc_frames, args.top) if args.tracemalloc else None,
        memray=MemrayProbe(Path(args.memray)) if args.memray else None,
    )


def probed(factory: Callable[..., Source], probe: BlockProbe, rows_file: Path) -> Callable[..., Source]:
    """``factory`` with its source wrapped: ``probe`` runs every block, each row appended to
    ``rows_file`` as it is taken (an interrupted run keeps what it measured)."""
    rows_file.unlink(missing_ok=True)

    def take(frames: int) -> None:
        probe(frames)
        with rows_file.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(probe.rows[-1]) + "\n")
        row = probe.rows[-1]
        native = row.get("malloc", {})
        tqdm.write(f"probe @{frames}: RSS {row['rss_mb']} MB (anon {row['rss_anon_mb']}, file {row['rss_file_mb']})"
                   + (f"; heap in use {native['in_use_mb']} free {native['free_mb']} MB" if native else ""))  # fmt: skip

    def build(uri: str, options: SourceOptions, report: StatusReport) -> Source:
        return ProbedSource(factory(uri, options, report), probe.block, take)

    return build


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True)
    parser.add_argument(
        "--mode",
        choices=("live", "replay"),
        default="live",
        help="live: one long-lived source at the camera's rate (a car); replay: a drive:// replayed "
        "endlessly at full speed (soaks the source rebuilds)",
    )
    parser.add_argument("--source", help="live default: test://?pattern=ball&size=1280x720&fps=30")
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--frames", type=int, default=0, help="stop after this many frames (drive:// loops)")
    parser.add_argument("--block", type=int, default=100_000, help="frames per summary row with --frames")
    parser.add_argument("--events-max-bytes", type=int, default=50_000_000, help="events file rotation size")
    parser.add_argument("--sample-s", type=float, default=5.0)
    parser.add_argument("--warmup-s", type=float, default=60.0)
    parser.add_argument("--budget-ms", type=float, default=100.0)
    parser.add_argument(
        "--stall-timeout",
        type=float,
        default=0.5,
        help="s without a frame before a live source is rebuilt (edge-detect's default; raise it on a "
        "machine that pauses the soak, or every pause rebuilds the one source)",
    )
    parser.add_argument("--out", default="bench/results/soak")
    probes = parser.add_argument_group(
        "finding what grows (bench/memprobe.py), taken at every --block frames"
    )
    probes.add_argument("--malloc-info", action="store_true", help="glibc heap per arena: in use, free, mmap")
    probes.add_argument("--tracemalloc", action="store_true", help="Python allocation sites that grew")
    probes.add_argument("--tracemalloc-frames", type=int, default=12, help="traceback depth kept")
    probes.add_argument("--malloc-trim", action="store_true", help="malloc_trim(0) after each reading")
    probes.add_argument("--memray", metavar="FILE", help="memray native trace from the first block on")
    probes.add_argument("--top", type=int, default=10, help="growing sites reported per reading")
    args = parser.parse_args()
    if args.block < 1:
        parser.error(f"--block must be at least 1 frame, not {args.block}")
    if args.memray and args.tracemalloc:
        # Each would report the other: memray sees tracemalloc's snapshots as native allocations.
        parser.error("--memray and --tracemalloc trace each other; run them one at a time")
    if args.tracemalloc_frames < 1:
        parser.error(f"--tracemalloc-frames must be at least 1, not {args.tracemalloc_frames}")
    if args.source is None:
        if args.mode == "replay":
            parser.error("--mode replay needs --source drive://FOLDER")
        args.source = "test://?pattern=ball&size=1280x720&fps=30"
    if args.mode == "replay" and not args.source.startswith("drive://"):
        parser.error(f"--mode replay replays a recorded drive (drive://FOLDER), not {args.source}")
    if args.mode == "live" and args.source.startswith("drive://"):
        parser.error("--mode live needs a live source; a drive:// is --mode replay")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    events = out / "events.jsonl"
    events.unlink(missing_ok=True)
    for old in out.glob("events.jsonl.*"):
        old.unlink()
    config = DetectConfig(
        source=args.source, model=args.model, events=str(events), health=False, budget_ms=args.budget_ms,
        max_frames=args.frames, events_max_bytes=args.events_max_bytes, stall_timeout=args.stall_timeout,
    )  # fmt: skip
    stop, sample_record = threading.Event(), Record(out / "samples.jsonl")
    duration_s = args.minutes * 60 if not args.frames else float("inf")
    follower = HeartbeatFollower(events, Record(out / "beats.jsonl"))
    sampler = threading.Thread(
        target=sample, args=(stop, args.sample_s, duration_s, sample_record, events, follower), daemon=True
    )
    sampler.start()
    # Ctrl-C / SIGTERM end the run early but still write the summary of what ran.
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    probe = make_probe(args, out)
    source_factory = endless_factory if args.mode == "replay" else make_source
    if probe is not None:
        probe.start()
        source_factory = probed(source_factory, probe, out / "probes.jsonl")
    try:
        code = run_detect(config, stop, source_factory=source_factory)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        probe_end = probe.finish(args.top) if probe is not None else {}
    stop.set()
    sampler.join()
    follower.close()
    samples, beats = sample_record.rows(), follower.record.rows()
    sample_record.close()
    follower.record.close()
    rows = blocks(samples, beats, args.block) if args.frames else []
    result = {
        "config": {**vars(args)},
        "exit_code": code,
        "summary": {
            **summarise(samples, beats, args.warmup_s),
            "rss_block_max_growth_pct": envelope_growth(rows),
        },
        "event_counts": follower.counts,
        "blocks": rows,
        "probes": probe.rows if probe is not None else [],
        **probe_end,
        "samples": samples,
        "latency": [
            {k: b.get(k) for k in ("monotonic_ns", "fps", "p50_ms", "p99_ms", "drop_rate")} for b in beats
        ],
    }
    (out / "soak.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(samples, beats, out / "soak.png")
    print(json.dumps(result["summary"], indent=2))
    for row in result["blocks"]:
        print(json.dumps(row))


if __name__ == "__main__":
    main()
