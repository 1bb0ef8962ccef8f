"""What the live outputs cost the detector: edge-bench end-to-end runs, alternated in one run.

    .venv/bin/python bench/live_view_overhead.py --repeats 3 --frames 300 --out runs/live_view
    .venv/bin/python bench/live_view_overhead.py --configs off client --sources back-to-back

Each repeat runs every configuration once, in turn, through ``edge-bench``'s own end-to-end
measurement (:func:`stopsign.edge.cli.benchmark.bench_e2e`: the real ``run_detect`` pipeline,
latency per frame from its frame log), so the machine's swings fall on all of them alike:

- ``off``: no live output;
- ``idle``: ``--view`` on, nobody watching;
- ``client``: ``--view`` with one WebSocket client reading every frame it is sent (10 fps);
- ``stalled``: ``--view`` with one client that opened the socket and never reads again;
- ``foxglove``: ``--foxglove`` with one client subscribed to the image and the annotations.

Sources (``--sources``): edge-bench's default (one still 720p frame pushed again and again) at
the camera's rate (``camera``: ``edge-bench --rate``, ``--camera-fps`` frames a second) or
``back-to-back`` (as fast as the loop takes them). Prints
one Markdown table: latency p50 / p99 per repeat and their medians, the loop's own time in the
sinks (``on_frame`` of every output, outside the latency), CPU per frame, and the frames each
client got.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import socket
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stopsign.edge.cli import bench as bench_cli
from stopsign.edge.cli.benchmark import BenchRun, bench_e2e

CONFIGS = ("off", "idle", "client", "stalled", "foxglove")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Client:
    """A viewer in a thread of its own: connects as soon as the server listens, then reads
    (or, ``stalled``, stops reading after the handshake). ``frames``: binary messages received."""

    kind: str
    port: int
    frames: int = 0
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def start(self) -> None:
        target: Callable[[], None] = {
            "client": self._view,
            "stalled": self._stalled,
            "foxglove": self._foxglove,
        }[self.kind]
        self.thread = threading.Thread(target=target, daemon=True)
        self.thread.start()

    def join(self) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join(timeout=10)

    def _connect(self, connect: Callable[[], object]) -> object:
        while not self.stop.is_set():
            try:
                return connect()
            except (OSError, EOFError, RuntimeError):  # the server is not listening yet
                time.sleep(0.02)
        raise RuntimeError("stopped before the server listened")

    def _read(self, ws: object) -> None:
        from websockets.exceptions import ConnectionClosed

        while not self.stop.is_set():
            try:
                message = ws.recv(timeout=0.2)  # type: ignore[attr-defined]
            except TimeoutError:
                continue
            except ConnectionClosed:  # the run ended and its server closed
                return
            if isinstance(message, bytes):
                self.frames += 1

    def _view(self) -> None:
        from websockets.sync.client import connect

        ws = self._connect(lambda: connect(f"ws://127.0.0.1:{self.port}/ws", max_size=None))
        with ws:  # type: ignore[attr-defined]
            self._read(ws)

    def _foxglove(self) -> None:
        from websockets.sync.client import connect

        url = f"ws://127.0.0.1:{self.port}"
        ws = self._connect(lambda: connect(url, subprotocols=["foxglove.sdk.v1"], max_size=None))
        with ws:  # type: ignore[attr-defined]
            channels: dict[str, int] = {}
            while len(channels) < 2:
                message = json.loads(ws.recv())  # type: ignore[attr-defined]
                if message["op"] == "advertise":
                    for channel in message["channels"]:
                        if channel["topic"] in ("/stopsign/image/compressed", "/stopsign/annotations"):
                            channels[channel["topic"]] = channel["id"]
            subscriptions = [{"id": i, "channelId": c} for i, c in enumerate(channels.values(), 1)]
            ws.send(json.dumps({"op": "subscribe", "subscriptions": subscriptions}))  # type: ignore[attr-defined]
            self._read(ws)
            self.frames //= 2  # an image and its annotations per frame

    def _stalled(self) -> None:
        def connect() -> socket.socket:
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # fills at once
            try:
                sock.connect(("127.0.0.1", self.port))
            except OSError:
                sock.close()
                raise
            return sock

        sock: socket.socket = self._connect(connect)  # type: ignore[assignment]
        key = base64.b64encode(os.urandom(16)).decode()
        sock.sendall(
            f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        self.frames = -1 if sock.recv(12) != b"HTTP/1.1 101" else 0
        self.stop.wait()  # never reads again
        sock.close()


def measure(config: str, args: argparse.Namespace, rate: float | None) -> tuple[BenchRun, int | None]:
    port = free_port()
    options: dict[str, object] = {}
    if config in ("idle", "client", "stalled"):
        options = {"view": f"127.0.0.1:{port}", "view_fps": args.view_fps}
    elif config == "foxglove":
        options = {"foxglove": f"127.0.0.1:{port}", "foxglove_fps": args.view_fps}
    client = Client(config, port) if config in ("client", "stalled", "foxglove") else None
    if client is not None:
        client.start()
    try:
        run = bench_e2e(
            args.model,
            args.backend,
            bench_cli.DEFAULT_SOURCE,
            args.frames,
            args.warmup,
            rate=rate,
            options=options,
        )
    finally:
        if client is not None:
            client.join()
    return run, client.frames if client is not None else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, default=bench_cli.SHIPPED_MODEL)
    parser.add_argument("--backend", default="auto", help="edge-bench --backend (auto: the CPU default here)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--camera-fps", type=int, default=30)
    parser.add_argument("--view-fps", type=float, default=10.0)
    parser.add_argument("--configs", nargs="+", choices=CONFIGS, default=list(CONFIGS))
    parser.add_argument("--sources", nargs="+", choices=("camera", "back-to-back"), default=["camera"])
    parser.add_argument("--out", type=Path, help="write every run's edge-bench JSON here")
    args = parser.parse_args(argv)
    every: dict[str, float | None] = {"camera rate": float(args.camera_fps), "back to back": None}
    names = {"camera rate": "camera", "back to back": "back-to-back"}
    sources = {label: rate for label, rate in every.items() if names[label] in args.sources}
    rows: dict[tuple[str, str], list[tuple[BenchRun, int | None]]] = {}
    for repeat in range(args.repeats):
        for label, rate in sources.items():
            for config in args.configs:
                print(
                    f"live_view_overhead: repeat {repeat + 1}/{args.repeats} {label} {config}",
                    file=sys.stderr,
                )
                run, frames = measure(config, args, rate)
                rows.setdefault((label, config), []).append((run, frames))
                if args.out:
                    args.out.mkdir(parents=True, exist_ok=True)
                    name = f"{label.replace(' ', '_')}_{config}_{repeat}.json"
                    (args.out / name).write_text(
                        json.dumps({**run.to_dict(), "client_frames": frames}, indent=2)
                    )
    print("| source | config | p50 ms per repeat | p50 median | p99 ms per repeat | p99 median | "
          "Δp50 vs off | p99 / off | sinks p50 / p99 ms | CPU ms/frame | frames to the client per repeat |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for label in sources:
        base = rows.get((label, "off"))
        base_p50 = statistics.median(r.latency_summary()["p50"] for r, _ in base) if base else None
        base_p99 = statistics.median(r.latency_summary()["p99"] for r, _ in base) if base else None
        for config in args.configs:
            runs = rows[(label, config)]
            p50s = [r.latency_summary()["p50"] for r, _ in runs]
            p99s = [r.latency_summary()["p99"] for r, _ in runs]
            p50, p99 = statistics.median(p50s), statistics.median(p99s)
            cpu = statistics.median(r.cpu_ms_per_frame or 0.0 for r, _ in runs)
            delta = f"{p50 - base_p50:+.2f}" if base_p50 is not None else "-"
            ratio = f"{p99 / base_p99:.2f}" if base_p99 else "-"
            frames = ", ".join("-" if f is None else str(f) for _, f in runs)
            sinks = [s["sinks"] for r, _ in runs for s in r.frame_stages if s.get("sinks") is not None]
            sinks_text = f"{np.percentile(sinks, 50):.3f} / {np.percentile(sinks, 99):.3f}" if sinks else "-"
            print(f"| {label} | {config} | {', '.join(f'{v:.2f}' for v in p50s)} | {p50:.2f} | "
                  f"{', '.join(f'{v:.2f}' for v in p99s)} | {p99:.2f} | {delta} | {ratio} | {sinks_text} | {cpu:.1f} | {frames} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
