"""A network camera that fails: how long `edge-detect` is blind, and what it loses.

    .venv/bin/python bench/camera_faults.py --json runs/camera_faults.json

A real RTSP server (``python -m stopsign.edge.sources.rtsp_camera``, GStreamer's RTSP server in
its own process) serves a frame of a recorded drive with a stop sign in it, held (a car waiting
at the sign), to a real ``edge-detect --source rtsp://...`` process. Then the camera fails:

    kill:N     SIGKILL the server (power cut), start a new one N s later
    pause:N    SIGSTOP the server for N s (socket open, no data), then SIGCONT
    garbage:N  kill the server; for N s a process answers the port with random bytes; then a
               real server again

For each fault, from the detector's frame log and events (both on the machine's monotonic
clock): time from the last frame to ``source_stalled``, time from the camera's return (the new
server listening) to the first processed frame and to ``source_restored``, frames lost at the
camera's rate, and the ``stop_sign_ahead`` / ``stop_sign_lost`` events around the gap (the sign
is in view before and after: one announcement in all is right). Then ``--cycles`` kill/return
cycles of 1 s, sampling the detector's RSS, open file descriptors and threads after each; the
first ``--warmup-cycles`` let the allocator's per-thread arenas fill (each rebuilt pipeline
brings new streaming threads), the growth is measured over the rest, and ``--plot`` draws all.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm import tqdm

from stopsign.edge.cli.machine import process_stats

REPO = Path(__file__).resolve().parent.parent
DEFAULT_VIDEO = REPO / "samples" / "drives" / "day_approach" / "video.mp4"
DEFAULT_FAULTS = ("kill:1", "kill:3", "kill:10", "pause:3", "garbage:3")
GOALS = {"stall_s": 1.0, "first_frame_s": 2.0, "rss_growth": 0.02}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def parse_fault(text: str) -> tuple[str, float]:
    kind, _, seconds = text.partition(":")
    if kind not in ("kill", "pause", "garbage") or not seconds:
        raise argparse.ArgumentTypeError(f"{text!r}: expected kill:S, pause:S or garbage:S")
    try:
        return kind, float(seconds)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: {seconds!r} is not a number of seconds") from None


class Camera:
    """The RTSP server process (and the garbage impostor), started and failed on request."""

    def __init__(self, video: Path, hold_frame: int, port: int, logs: Path) -> None:
        self.video, self.hold_frame, self.port, self.logs = video, hold_frame, port, logs
        self.epoch = time.time()
        self.process: subprocess.Popen | None = None
        self.starts = 0

    def start(self, garbage: bool = False) -> int:
        """Start the server; returns the monotonic time (ns) at which it is listening."""
        command = [sys.executable, "-m", "stopsign.edge.sources.rtsp_camera", "--port", str(self.port)]
        if garbage:
            command.append("--garbage")
        else:
            command += [
                "--video",
                str(self.video),
                "--hold-frame",
                str(self.hold_frame),
                "--epoch",
                str(self.epoch),
            ]
        self.starts += 1
        log = (self.logs / f"camera{self.starts}.log").open("w")
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True)
        assert self.process.stdout is not None
        line = self.process.stdout.readline()  # the server prints one line once it listens
        if "serving" not in line:
            raise RuntimeError(f"RTSP camera did not start: {line!r}; see {log.name}")
        return time.monotonic_ns()

    def kill(self) -> int:
        assert self.process is not None
        now = time.monotonic_ns()
        self.process.kill()
        self.process.wait()
        return now

    def signal(self, signum: int) -> int:
        assert self.process is not None
        now = time.monotonic_ns()
        self.process.send_signal(signum)
        return now

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.kill()
            self.process.wait()


@dataclass
class FaultResult:
    fault: str
    gap_s: float
    stall_s: float | None = None  # last frame -> source_stalled
    first_frame_s: float | None = None  # camera listening again -> first frame processed
    restored_s: float | None = None  # camera listening again -> source_restored
    blind_s: float | None = None  # last frame before -> first frame after
    frames_lost: int | None = None  # at the camera's rate over the blind time
    ahead_events: int = 0  # stop_sign_ahead from the fault to 2 s after the return
    lost_events: list[str] = field(default_factory=list)  # reasons of stop_sign_lost in that window


def read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # the line being written when we read
    return rows


def analyse(
    fault: str,
    gap_s: float,
    fault_ns: int,
    back_ns: int,
    end_ns: int,
    frames: list[dict],
    events: list[dict],
    fps: float,
) -> FaultResult:
    result = FaultResult(fault, gap_s)
    capture = {f["frame"]: f["monotonic_ns"] for f in frames}
    before = [t for t in capture.values() if t <= fault_ns]
    after = [t for t in capture.values() if t > back_ns]
    stalled = [
        e for e in events if e["event"] == "source_stalled" and e["monotonic_ns"] > fault_ns - int(1e8)
    ]
    restored = [e for e in events if e["event"] == "source_restored" and e["monotonic_ns"] > back_ns]
    last = max(before) if before else None
    if stalled and last is not None:
        result.stall_s = round((stalled[0]["monotonic_ns"] - last) / 1e9, 3)
    if after:
        result.first_frame_s = round((min(after) - back_ns) / 1e9, 3)
        if last is not None:
            result.blind_s = round((min(after) - last) / 1e9, 3)
            result.frames_lost = max(0, round(result.blind_s * fps) - 1)
    if restored:
        result.restored_s = round((restored[0]["monotonic_ns"] - back_ns) / 1e9, 3)
    for event in events:
        frame = event.get("frame")
        t = capture.get(frame) if event["event"] in ("stop_sign_ahead", "stop_sign_lost") else None
        if t is None or not fault_ns - int(1e8) <= t <= end_ns:
            continue
        if event["event"] == "stop_sign_ahead":
            result.ahead_events += 1
        else:
            result.lost_events.append(str(event.get("reason")))
    return result


def run(args: argparse.Namespace) -> dict:
    work = Path(tempfile.mkdtemp(prefix="camera_faults_"))
    port = free_port()
    camera = Camera(args.video, args.hold_frame, port, work)
    events_path, frames_path = work / "events.jsonl", work / "frames.jsonl"
    detect = [sys.executable, "-m", "stopsign.edge.cli.detect", "--source", f"rtsp://127.0.0.1:{port}/drive",
              "--model", str(args.model), "--events", str(events_path), "--log-frames", str(frames_path),
              "--no-health", "--threads", "1"]  # fmt: skip
    camera.start()
    detector = subprocess.Popen(detect, stdout=subprocess.DEVNULL, stderr=(work / "detect.log").open("w"))
    results: list[FaultResult] = []
    samples: list[dict[str, float]] = []
    try:
        deadline = time.monotonic() + 30
        while not any(e["event"] == "stop_sign_ahead" for e in read_jsonl(events_path)):
            if time.monotonic() > deadline or detector.poll() is not None:
                raise RuntimeError(f"no stop_sign_ahead within 30 s; see {work}/detect.log")
            time.sleep(0.2)
        time.sleep(args.settle)
        windows = []
        for kind, seconds in tqdm(args.faults, desc="faults", unit="fault"):
            if kind == "pause":
                fault_ns = camera.signal(signal.SIGSTOP)
                time.sleep(seconds)
                back_ns = camera.signal(signal.SIGCONT)
            else:
                fault_ns = camera.kill()
                if kind == "garbage":
                    camera.start(garbage=True)
                    time.sleep(seconds)
                    camera.kill()
                else:
                    time.sleep(seconds)
                back_ns = camera.start()
            time.sleep(args.settle)
            windows.append((f"{kind}:{seconds:g}", seconds, fault_ns, back_ns, time.monotonic_ns()))
        samples.append(process_stats(detector.pid))
        for _ in tqdm(range(args.warmup_cycles + args.cycles), desc="kill/return cycles", unit="cycle"):
            camera.kill()
            time.sleep(1.0)
            camera.start()
            time.sleep(args.settle)
            samples.append(process_stats(detector.pid))
    finally:
        if detector.poll() is None:
            detector.send_signal(signal.SIGINT)
            try:
                detector.wait(timeout=20)
            except subprocess.TimeoutExpired:
                detector.kill()
        camera.stop()
    frames, events = read_jsonl(frames_path), read_jsonl(events_path)
    fps = args.fps
    for window in windows:
        results.append(analyse(*window, frames, events, fps))
    summary = {
        "machine": f"{os.cpu_count()} CPUs, {sys.platform}",
        "model": str(args.model),
        "camera": {"video": str(args.video), "hold_frame": args.hold_frame, "fps": fps},
        "goals": GOALS,
        "faults": [asdict(r) for r in results],
        "cycles": {
            "count": args.cycles,
            "warmup": args.warmup_cycles,
            "first": samples[args.warmup_cycles] if len(samples) > args.warmup_cycles else None,
            "last": samples[-1] if samples else None,
            "samples": samples,
        },
        "detector_exit": detector.returncode,
        "work": str(work),
    }
    first, last = summary["cycles"]["first"], summary["cycles"]["last"]
    if first is not None and last is not None:
        summary["cycles"]["rss_growth"] = round(last["rss_mb"] / first["rss_mb"] - 1, 4)
        summary["cycles"]["fd_growth"] = last["fds"] - first["fds"]
        summary["cycles"]["thread_growth"] = last["threads"] - first["threads"]
    return summary


def plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples, warmup = summary["cycles"]["samples"], summary["cycles"]["warmup"]
    fig, axes = plt.subplots(3, 1, figsize=(7, 6), sharex=True)
    for ax, key, label in zip(axes, ("rss_mb", "fds", "threads"), ("RSS (MB)", "open fds", "threads")):
        ax.plot(range(len(samples)), [s[key] for s in samples], marker=".")
        ax.axvline(warmup, color="grey", linestyle=":")
        ax.set_ylabel(label)
    axes[0].set_title(
        "edge-detect, RTSP camera killed and back each cycle (dotted: warm-up end)", fontsize=10
    )
    axes[-1].set_xlabel("cycles")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def markdown(summary: dict) -> str:
    rows = [
        "| fault | stall reported after (s) | first frame after return (s) | source_restored after return (s) | blind (s) | frames lost | stop_sign_ahead in window | stop_sign_lost |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in summary["faults"]:
        rows.append(
            f"| {r['fault']} | {r['stall_s']} | {r['first_frame_s']} | {r['restored_s']} | {r['blind_s']} | "
            f"{r['frames_lost']} | {r['ahead_events']} | {', '.join(r['lost_events']) or 'none'} |"
        )
    cycles = summary["cycles"]
    if cycles.get("first") and cycles.get("last"):
        a, b = cycles["first"], cycles["last"]
        rows.append("")
        rows.append(
            f"Over {cycles['count']} kill/return cycles after {cycles['warmup']} of warm-up: RSS {a['rss_mb']:.1f} -> {b['rss_mb']:.1f} MB "
            f"({cycles.get('rss_growth', 0) * 100:+.1f} %), fds {a['fds']} -> {b['fds']}, "
            f"threads {a['threads']} -> {b['threads']}"
        )
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, default=REPO / "edge" / "assets" / "stopsign.onnx")
    parser.add_argument("--video", type=Path, default=DEFAULT_VIDEO)
    parser.add_argument(
        "--hold-frame", type=int, default=40, help="frame of --video to hold (a sign in view)"
    )
    parser.add_argument("--fps", type=float, default=15.0, help="the camera's frame rate (the video's)")
    parser.add_argument(
        "--faults", type=parse_fault, nargs="+", default=[parse_fault(f) for f in DEFAULT_FAULTS]
    )
    parser.add_argument("--cycles", type=int, default=20, help="kill/return cycles for the leak check")
    parser.add_argument(
        "--warmup-cycles", type=int, default=10, help="cycles before the leak check's baseline"
    )
    parser.add_argument("--plot", type=Path, help="PNG of RSS, fds and threads per cycle")
    parser.add_argument(
        "--settle", type=float, default=3.0, help="seconds of normal stream after each return"
    )
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    summary = run(args)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=1) + "\n")
    if args.plot:
        plot(summary, args.plot)
    print(markdown(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
