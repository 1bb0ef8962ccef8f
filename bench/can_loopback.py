"""A CAN bus on loopback for tests and benches: python-can-remote's server on 127.0.0.1 (a
python-can ``virtual`` bus inside it) and a recorder of every frame that crosses it.

This VM's kernel has no ``vcan`` module, so SocketCAN cannot be made here; the remote server is a
bus that other processes reach over a websocket on 127.0.0.1 only (never multicast)::

    with LoopbackCanBus() as bus:
        subprocess.run(["edge-detect", "--source", ..., "--can", bus.target])
        frames = bus.frames()            # ReceivedFrame: timestamps, id, payload
        report = status_rate(frames, load_dbc(DEFAULT_DBC))

Or on its own, recording for a while and writing the frames as JSON::

    .venv/bin/python bench/can_loopback.py --seconds 20 --json frames.json

Timestamps: ``bus_time`` is the wall clock (s) at which the server's virtual bus took the frame
(python-can stamps it there, the nearest thing to "on the wire"); ``received_ns`` is this
process's ``time.monotonic_ns()`` at reception, comparable with the ``monotonic_ns`` of events
written by another process on the same machine.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import can
import numpy as np
from can_remote.server import RemoteServer

from stopsign.edge.sinks.can_dbc import (
    COUNTER_SIGNAL,
    DEFAULT_DBC,
    EVENT_MESSAGE,
    STATUS_MESSAGE,
    crc_byte_index,
    crc_of_frame,
    load_dbc,
)


class _Server(RemoteServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client gone mid-request (the tests drop connections on purpose): one line, no traceback.
        print(f"can loopback: connection from {client_address} ended: {sys.exc_info()[1]!r}", file=sys.stderr)


@dataclass(frozen=True)
class ReceivedFrame:
    """One frame seen on the bus; ``data`` as hex."""

    bus_time: float
    received_ns: int
    frame_id: int
    data: str

    @property
    def payload(self) -> bytes:
        return bytes.fromhex(self.data)


class LoopbackCanBus:
    """Starts the server (port 0: a free one) and a recording client; a context manager."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        if host not in ("127.0.0.1", "::1", "localhost"):
            raise ValueError(f"LoopbackCanBus binds loopback only, not {host!r}")
        # A virtual channel of its own: two buses in one process never hear each other's frames.
        self._server = _Server(host, port, interface="virtual", channel=f"loopback-{uuid.uuid4().hex[:8]}")
        self.port = int(self._server.server_port)
        self.target = f"remote:ws://{host}:{self.port}/"
        self._frames: list[ReceivedFrame] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._client: can.BusABC | None = None

    def __enter__(self) -> LoopbackCanBus:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        server = threading.Thread(target=self._server.serve_forever, name="can-loopback-server", daemon=True)
        server.start()
        self._client = can.Bus(interface="remote", channel=self.target.partition(":")[2])
        recorder = threading.Thread(target=self._record, name="can-loopback-recorder", daemon=True)
        recorder.start()
        self._threads = [server, recorder]

    def _record(self) -> None:
        assert self._client is not None
        while not self._stop.is_set():
            message = self._client.recv(0.1)
            if message is None:
                continue
            frame = ReceivedFrame(
                float(message.timestamp),
                time.monotonic_ns(),
                int(message.arbitration_id),
                bytes(message.data).hex(),
            )
            with self._lock:
                self._frames.append(frame)

    def frames(self) -> list[ReceivedFrame]:
        with self._lock:
            return list(self._frames)

    def stop(self) -> None:
        self._stop.set()
        if len(self._threads) > 1:
            self._threads[1].join(timeout=2.0)
        if self._client is not None:
            self._client.shutdown()
            self._client = None
        self._server.shutdown()
        self._server.server_close()
        # shutdown() only stops accepting; drop the open connections too, as a dead server would.
        for protocol in list(self._server.clients):
            with contextlib.suppress(OSError):  # the peer may have closed it already
                protocol._ws.socket.shutdown(socket.SHUT_RDWR)


@dataclass
class StampedRun:
    """An ``edge-detect`` run: exit code, stderr, and each stdout JSON line with the
    ``time.monotonic_ns()`` at which this process read it."""

    returncode: int
    stderr: str
    lines: list[tuple[int, dict[str, Any]]]


def run_detect_stamped(args: list[str], timeout_s: float = 300.0) -> StampedRun:
    """Runs ``edge-detect ARGS`` (events on stdout) and stamps every JSON line as it arrives."""
    command = [sys.executable, "-m", "stopsign.edge.cli.detect", *args]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    stderr: list[str] = []
    drain = threading.Thread(target=lambda: stderr.extend(process.stderr or ()), daemon=True)
    drain.start()
    lines: list[tuple[int, dict[str, Any]]] = []
    for line in process.stdout or ():
        lines.append((time.monotonic_ns(), json.loads(line)))
    process.wait(timeout=timeout_s)
    drain.join(timeout=5)
    return StampedRun(process.returncode, "".join(stderr), lines)


def event_delays_ms(run: StampedRun, frames: list[ReceivedFrame], database: Any) -> list[dict[str, Any]]:
    """Each tracker event of the run beside its StopSignEvent frame, in order: ``delay_ms`` is the
    frame's reception minus the JSON line's (both read by this process, one hop each)."""
    events = [(t, e) for t, e in run.lines if e.get("event") in ("stop_sign_ahead", "stop_sign_lost")]
    decoded = decode_frames(frames, database)
    can_events = [(f, d) for f, d in zip(frames, decoded) if d.get("message") == EVENT_MESSAGE]
    out = []
    for index, (seen_ns, event) in enumerate(events):
        row: dict[str, Any] = {
            "event": event["event"],
            "track_id": event["track_id"],
            "frame": event["frame"],
        }
        if index < len(can_events):
            frame, record = can_events[index]
            row["can"] = {k: record["signals"][k] for k in ("EventKind", "TrackId")}
            row["delay_ms"] = round((frame.received_ns - seen_ns) / 1e6, 3)
        out.append(row)
    return out


def frame_period_ms(run: StampedRun) -> float | None:
    """Mean wall time per processed frame, from the run's ``started`` and ``stopped`` events."""
    started = next((e for _, e in run.lines if e.get("event") == "started"), None)
    stopped = next((e for _, e in run.lines if e.get("event") == "stopped"), None)
    if started is None or stopped is None or not stopped.get("processed"):
        return None
    return (stopped["monotonic_ns"] - started["monotonic_ns"]) / 1e6 / stopped["processed"]


def decode_frames(frames: list[ReceivedFrame], database: Any) -> list[dict[str, Any]]:
    """Each frame decoded by cantools (``signals``), with ``message``, ``crc_ok`` and the times;
    a frame cantools cannot decode has ``error`` instead."""
    out: list[dict[str, Any]] = []
    for frame in frames:
        record: dict[str, Any] = {"bus_time": frame.bus_time, "received_ns": frame.received_ns}
        try:
            message = database.get_message_by_frame_id(frame.frame_id)
            signals = message.decode(frame.payload, decode_choices=True, scaling=True)
            # Value-table names come back as cantools' NamedSignalValue: plain strings for JSON.
            record["signals"] = {k: v if isinstance(v, (int, float)) else str(v) for k, v in signals.items()}
        except (KeyError, ValueError) as exc:  # an unknown ID or a bad payload is a finding, not a crash
            record.update(frame_id=frame.frame_id, error=f"{type(exc).__name__}: {exc}")
            out.append(record)
            continue
        record["message"] = message.name
        record["crc_ok"] = frame.payload[crc_byte_index(message)] == crc_of_frame(message, frame.payload)
        out.append(record)
    return out


def counter_gaps(decoded: list[dict[str, Any]], message: str) -> int:
    """Frames of ``message`` whose alive counter is not the previous one + 1 (mod 16)."""
    counters = [d["signals"][COUNTER_SIGNAL] for d in decoded if d.get("message") == message]
    return sum(1 for a, b in itertools.pairwise(counters) if b != (a + 1) % 16)


def status_sessions(decoded: list[dict[str, Any]]) -> list[list[float]]:
    """Bus times (s) of DetectorStatus frames, one list per sender session: a ``stopping`` frame
    (sent off schedule at shutdown) ends a session and is left out, so the gap while
    ``edge-detect`` restarts never counts as a period."""
    sessions: list[list[float]] = [[]]
    for record in decoded:
        if record.get("message") != STATUS_MESSAGE:
            continue
        if record["signals"]["State"] == "stopping":
            sessions.append([])
        else:
            sessions[-1].append(float(record["bus_time"]))
    return [times for times in sessions if times]


def status_rate(frames: list[ReceivedFrame], database: Any) -> dict[str, Any]:
    """DetectorStatus rate and jitter from the bus timestamps, over every sender session.

    ``rate_hz``: periods counted over the time they span, within sessions. Periods in ms;
    ``jitter_ms`` is their standard deviation, ``max_deviation_ms`` the largest distance of one
    period from the DBC's cycle time, ``periods_within_10pct`` the share within 10 % of it.
    """
    sessions = status_sessions(decode_frames(frames, database))
    cycle_ms = database.get_message_by_name(STATUS_MESSAGE).cycle_time
    periods_s = [np.diff(np.asarray(times, dtype=np.float64)) for times in sessions]
    periods = np.concatenate(periods_s) * 1e3 if periods_s else np.zeros(0)
    result: dict[str, Any] = {
        "frames": sum(len(times) for times in sessions),
        "sessions": len(sessions),
        "nominal_period_ms": cycle_ms,
    }
    if periods.size < 2:
        return result
    span = sum(times[-1] - times[0] for times in sessions)
    result.update(
        {
            "seconds": round(float(span), 3),
            "rate_hz": round(float(periods.size / span), 3),
            "period_ms": {
                "mean": round(float(periods.mean()), 3),
                "p50": round(float(np.percentile(periods, 50)), 3),
                "p99": round(float(np.percentile(periods, 99)), 3),
                "min": round(float(periods.min()), 3),
                "max": round(float(periods.max()), 3),
            },
            "jitter_ms": round(float(periods.std()), 3),
        }
    )
    if cycle_ms:
        deviation = np.abs(periods - cycle_ms)
        result["max_deviation_ms"] = round(float(deviation.max()), 3)
        result["periods_within_10pct"] = round(float((deviation <= 0.1 * cycle_ms).mean()), 4)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="how long to record")
    parser.add_argument("--port", type=int, default=0, help="server port on 127.0.0.1 (0: a free one)")
    parser.add_argument("--dbc", default=str(DEFAULT_DBC))
    parser.add_argument("--json", help="write the frames and the status rate here")
    args = parser.parse_args(argv)
    database = load_dbc(args.dbc)
    with LoopbackCanBus(port=args.port) as bus:
        print(
            f"recording {args.seconds:g} s; point edge-detect at --can {bus.target}",
            file=sys.stderr,
            flush=True,
        )
        time.sleep(args.seconds)
        frames = bus.frames()
    report = {"frames": [asdict(f) for f in frames], "status_rate": status_rate(frames, database)}
    print(json.dumps(report["status_rate"], indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
