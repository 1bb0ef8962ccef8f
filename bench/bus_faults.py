"""A broker that goes away (a car in a tunnel): what ``edge-detect --mqtt`` sends, delivers, loses.

    .venv/bin/python bench/bus_faults.py --json bench/results/bus_faults.json

A real Debian ``mosquitto`` runs on 127.0.0.1 with TLS (client certificates required), a password
file and the ACL of ``deploy/mqtt/`` (``stopsign.edge.sinks.mqtt_broker``). A real ``edge-detect``
pipeline (``run_detect``, in its own process) replays a recorded drive at its recorded rate,
looped (``samples/drives/*``, 15 fps), with ``--mqtt mqtts://127.0.0.1:PORT/cars/car1``. The back
office (user ``fleet``, a persistent QoS 1 session) records every message. Then, in turn:

    broker:N        SIGKILL the broker, start it again N s later (same port, same state on disk)
    broker+edge:N   the same, and ``edge-detect`` is stopped (SIGTERM) half-way through the
                    outage and started again (a restart, a crash loop, an update)

Per outage: events sent in its window (from ``edge-detect``'s own events files), how many of
them were still queued when the broker came back, the delay from the broker's return (listening
again) to the last of those delivered, and the queue's size on disk (records, bytes; sampled every
0.1 s). Over the run: events sent, delivered, lost (sent, never delivered) and duplicated (an
``event_id`` delivered twice). Every time is on this machine's monotonic clock, shared by the
processes. Goals: 0 events lost, every queued event delivered within 2 s of the broker's return.

CAN: the DetectorStatus rate and its jitter over the run are a column of this table once the CAN
output exists (issue 32, the CAN half): see ``can_status`` in :func:`summarise`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from stopsign.edge.sinks.mqtt import record_kind
from stopsign.edge.sinks.mqtt_broker import PASSWORDS, FleetSubscriber, LocalBroker
from stopsign.edge.sources.base import Source, SourceOptions, StatusReport
from stopsign.edge.sources.factory import make_source
from stopsign.edge.vision.frame import Frame

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DRIVE = REPO / "samples" / "drives" / "day_approach"
DEFAULT_FAULTS = ("broker:1", "broker:10", "broker:60", "broker+edge:10", "broker+edge:30")
GOALS = {"lost": 0, "delivery_after_return_s": 2.0}


# --- the detector process: edge-detect's own run_detect over a paced, looped drive -------------


class PacedLoop(Source):
    """A recorded drive replayed forever at ``fps``: reopened at its end, indices and times continued."""

    def __init__(self, build: Callable[[], Source], fps: float) -> None:
        self._build, self._fps = build, fps
        self._inner = build()
        self._count = 0
        self._start = 0.0

    def open(self) -> None:
        self._inner.open()
        self.live, self.description = False, f"paced loop of {self._inner.description} at {self._fps:g} fps"
        self._start = time.monotonic()

    def read(self, timeout_s: float) -> Frame | None:
        frame = self._inner.read(timeout_s)
        if frame is None and self._inner.eos:
            self._inner.close()
            self._inner = self._build()
            self._inner.open()
            frame = self._inner.read(timeout_s)
        if frame is None:
            return None
        due = self._start + self._count / self._fps  # the camera's rate, not as fast as possible
        time.sleep(max(0.0, due - time.monotonic()))
        frame = dataclasses.replace(
            frame,
            index=self._count,
            pts_ns=int(self._count / self._fps * 1e9),
            monotonic_ns=time.monotonic_ns(),
        )
        self._count += 1
        return frame

    @property
    def eos(self) -> bool:
        return False

    @property
    def dropped(self) -> int:
        return self._inner.dropped

    def close(self) -> None:
        self._inner.close()


def detector_child(argv: list[str]) -> int:
    """``edge-detect ARGV`` with the drive paced and looped; SIGTERM stops it as it stops edge-detect."""
    from stopsign.edge.cli.detect import resolve_config, run_detect

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config, _ = resolve_config(argv)
    fps = float(json.loads((Path(config.uri[len("drive://") :]) / "meta.json").read_text())["fps"])
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())

    def paced(uri: str, options: SourceOptions, report: StatusReport) -> Source:
        return PacedLoop(lambda: make_source(uri, options, report), fps)

    return run_detect(config, stop, source_factory=paced)


class Detector:
    """The detector process; each start writes its own events file (``events.N.jsonl``)."""

    def __init__(self, folder: Path, broker: LocalBroker, drive: Path) -> None:
        self.folder, self.broker, self.drive = folder, broker, drive
        self.queue = folder / "mqtt-queue.sqlite"
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        f = self.broker.folder
        events = self.folder / f"events.{self.starts}.jsonl"
        args = ["--source", f"drive://{self.drive}", "--no-health", "--threads", "1", "--events", str(events),
                "--mqtt", f"{self.broker.url_base}/cars/car1", "--mqtt-ca", str(f / "ca.crt"),
                "--mqtt-cert", str(f / "car1.crt"), "--mqtt-key", str(f / "car1.key"), "--mqtt-queue", str(self.queue)]  # fmt: skip
        env = {**os.environ, "STOPSIGN_MQTT_USERNAME": "car1", "STOPSIGN_MQTT_PASSWORD": PASSWORDS["car1"]}
        log = open(self.folder / f"detector.{self.starts}.log", "wb")  # noqa: SIM115 - the child keeps it
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--child", *args], stderr=log, env=env, cwd=REPO
        )
        log.close()
        self.starts += 1

    def stop(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=30)
            self.process = None

    def events_sent(self) -> list[dict[str, Any]]:
        sent = []
        for n in range(self.starts):
            path = self.folder / f"events.{n}.jsonl"
            lines = path.read_text().splitlines() if path.exists() else []
            sent += [e for e in map(json.loads, lines) if record_kind(e) == "event"]
        return sent

    def queue_size(self) -> tuple[int, int]:
        """(records, bytes on disk) of the store and forward queue, read from this process."""
        size = 0
        for suffix in ("", "-wal", "-shm"):
            try:
                size += Path(f"{self.queue}{suffix}").stat().st_size
            except FileNotFoundError:  # not created yet, or the WAL just checkpointed away
                continue
        return len(self.queued_payloads()), size

    def queued_payloads(self) -> list[dict[str, Any]]:
        """The records in the queue file now (events and health), oldest first."""
        if not self.queue.exists():
            return []
        try:
            db = sqlite3.connect(f"file:{self.queue}?mode=ro", uri=True, timeout=1.0)
            try:
                return [json.loads(p) for (p,) in db.execute("SELECT payload FROM records ORDER BY seq")]
            finally:
                db.close()
        except sqlite3.Error:  # created but not yet initialised by the detector
            return []

    def started_at(self, run: int) -> float | None:
        """Monotonic s of run ``run``'s ``started`` event, None until it is written."""
        path = self.folder / f"events.{run}.jsonl"
        for line in path.read_text().splitlines() if path.exists() else []:
            if '"started"' in line:
                return json.loads(line)["monotonic_ns"] / 1e9
        return None


def wait_until(predicate: Callable[[], bool], timeout_s: float, period_s: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(period_s)
    return predicate()


# --- the run ------------------------------------------------------------------------------------


class QueueSampler(threading.Thread):
    """Samples the queue's (monotonic s, records, bytes) every ``period_s`` in the background."""

    def __init__(self, detector: Detector, period_s: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.detector, self.period_s = detector, period_s
        self.samples: list[tuple[float, int, int]] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            records, size = self.detector.queue_size()  # the SQLite read may wait on the writer: a few ms
            self.samples.append((time.monotonic(), records, size))
            time.sleep(self.period_s)


def canonical(event: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in event.items() if k != "event_id"}, sort_keys=True)


def run(args: argparse.Namespace) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="bus_faults_"))
    broker = LocalBroker.create(folder / "broker", require_certificate=True)
    broker.start()
    fleet = FleetSubscriber(broker)
    fleet.wait_connected()
    fleet.wait_saved()
    detector = Detector(folder, broker, args.drive)
    sampler = QueueSampler(detector)
    outages: list[dict[str, Any]] = []
    left: list[dict[str, Any]] = []
    try:
        detector.start()
        sampler.start()
        if not wait_until(lambda: detector.started_at(0) is not None, 120):
            raise RuntimeError(f"edge-detect did not start: see {folder}/detector.0.log")
        time.sleep(args.settle_s)
        for fault in args.faults:
            kind, _, seconds = fault.partition(":")
            outage = float(seconds)
            t_kill = time.monotonic()
            broker.stop(kill=True)
            restarted_at = None
            if kind == "broker+edge":
                time.sleep(outage / 2)
                detector.stop()
                detector.start()
                restarted_at = detector.starts - 1  # its start time is read from its events file at the end
            time.sleep(max(0.0, t_kill + outage - time.monotonic()))
            broker.start()
            t_back = time.monotonic()
            queued = detector.queued_payloads()  # what waits for the broker as it comes back
            outages.append({"fault": fault, "t_kill": t_kill, "t_back": t_back, "edge_started": restarted_at,
                            "queued": [(record_kind(p), p["event_id"]) for p in queued]})  # fmt: skip
            print(f"{fault}: broker back after {t_back - t_kill:.2f} s", file=sys.stderr)
            # The next fault starts from an empty queue (or after 60 s, reported by the row).
            wait_until(lambda: detector.queue_size()[0] == 0, 60)
            time.sleep(args.settle_s)
        wait_until(lambda: detector.queue_size()[0] == 0, 60)
        detector.stop()
        left = detector.queued_payloads()  # not lost: the next start sends them first
        time.sleep(1.0)  # the last deliveries reach the fleet
    finally:
        sampler.done.set()
        detector.stop()
        fleet.close()
        broker.stop(kill=False)
    for outage in outages:
        run_index = outage["edge_started"]
        outage["edge_started"] = None if run_index is None else detector.started_at(run_index)
    result = summarise(detector.events_sent(), fleet.snapshot(), outages, sampler.samples, left)
    result.update({"drive": str(args.drive), "folder": str(folder), "detector_starts": detector.starts})
    return result


def summarise(
    sent: list[dict[str, Any]],
    received: list[tuple[str, dict[str, Any], float]],
    outages: list[dict[str, Any]],
    samples: list[tuple[float, int, int]],
    left: list[dict[str, Any]],
) -> dict[str, Any]:
    """The table's figures; ``received``: (topic, payload, monotonic s of arrival) as the fleet saw
    them; ``left``: what the queue held when the last run stopped (sent by the next start)."""
    events = [(p, t_arrival) for topic, p, t_arrival in received if topic.endswith("/events")]
    ids = Counter(p["event_id"] for p, _ in events)
    first_arrival: dict[str, float] = {}
    for payload, arrived in events:
        first_arrival.setdefault(canonical(payload), arrived)
    sent_keys = Counter(canonical(e) for e in sent)
    # Two runs replaying the same drive may send equal events (same frame, track, time): each
    # distinct event_id delivered with a content accounts for one sent event with that content.
    ids_by_content: dict[str, set[str]] = {}
    for payload, _ in events:
        ids_by_content.setdefault(canonical(payload), set()).add(payload["event_id"])
    delivered_keys = Counter({k: len(v) for k, v in ids_by_content.items()})
    kept = Counter(canonical(p) for p in left if record_kind(p) == "event")
    lost = sent_keys - delivered_keys - kept
    arrival: dict[str, float] = {}  # event_id -> first arrival, events and health
    for _topic, payload, arrived in received:
        arrival.setdefault(payload["event_id"], arrived)
    rows = []
    for outage in outages:
        t_kill, t_back = outage["t_kill"], outage["t_back"]
        queued_events = [i for kind, i in outage["queued"] if kind == "event"]
        queued_health = [i for kind, i in outage["queued"] if kind == "health"]

        def after_return(ids: list[str], t_back: float = t_back) -> float | None:
            times = [arrival[i] for i in ids if i in arrival]
            return round(max(times) - t_back, 3) if times else None

        during = [(records, size) for t, records, size in samples if t_kill <= t <= t_back + 0.2]
        rows.append(
            {
                "fault": outage["fault"],
                "outage_s": round(t_back - t_kill, 2),
                "edge_restarted_after_s": None
                if outage["edge_started"] is None
                else round(outage["edge_started"] - t_kill, 2),
                "queued_events_at_return": len(queued_events),
                "queued_health_at_return": len(queued_health),
                "queued_events_never_delivered": sum(1 for i in queued_events if i not in arrival),
                "last_queued_delivered_after_return_s": after_return(queued_events),
                "last_queued_record_delivered_after_return_s": after_return(queued_events + queued_health),
                # With edge-detect restarted mid-outage and still starting when the broker is back,
                # the clock that matters starts when both are back.
                "last_queued_delivered_after_both_back_s": after_return(
                    queued_events, max(t_back, outage["edge_started"] or t_back)
                ),
                "queue_records_max": max((r for r, _ in during), default=0),
                "queue_bytes_max": max((s for _, s in during), default=0),
            }
        )
    # The goal's clock starts when the broker is back, or when a restarted edge-detect is up again
    # if that is later (a detector still loading its model cannot deliver; its start-up is its own figure).
    key = "last_queued_delivered_after_both_back_s"
    worst = [r[key] for r in rows if r[key] is not None]
    never = sum(r["queued_events_never_delivered"] for r in rows)
    return {
        "events_sent": len(sent),
        "events_delivered": len(ids),
        "events_delivered_not_sent": sum((delivered_keys - sent_keys).values()),
        "events_lost": sum(lost.values()),
        "lost": sorted(lost)[:20],
        "events_duplicated": sum(n - 1 for n in ids.values()),
        "events_left_in_queue_at_end": sum(kept.values()),
        "health_delivered": sum(1 for topic, _, _ in received if topic.endswith("/health")),
        "outages": rows,
        "worst_delivery_after_return_s": max(worst, default=None),
        "goals": GOALS,
        "goals_met": sum(lost.values()) == GOALS["lost"]
        and never == 0
        and all(w <= GOALS["delivery_after_return_s"] for w in worst),
        # The CAN half of issue 32 adds here: {"rate_hz": ..., "jitter_ms": ...} of DetectorStatus.
        "can_status": None,
    }


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "| fault | outage (s) | edge-detect back after (s) | queued at return: events / health "
        "| last queued event delivered after return (s) | ... after broker and edge-detect both back (s) "
        "| last queued record, health too (s) | queue max (records) | queue max on disk (kB) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["outages"]:

        def show(value: Any) -> str:
            return "-" if value is None else str(value)

        lines.append(
            f"| {r['fault']} | {r['outage_s']} | {show(r['edge_restarted_after_s'])} | "
            f"{r['queued_events_at_return']} / {r['queued_health_at_return']} | "
            f"{show(r['last_queued_delivered_after_return_s'])} | {show(r['last_queued_delivered_after_both_back_s'])} | "
            f"{show(r['last_queued_record_delivered_after_return_s'])} | {r['queue_records_max']} | "
            f"{r['queue_bytes_max'] / 1000:.1f} |"
        )
    lines.append("")
    lines.append(
        f"Over the run: {result['events_sent']} events sent, {result['events_delivered']} delivered, "
        f"**{result['events_lost']} lost**, {result['events_duplicated']} duplicated (same event_id twice), "
        f"{result['events_left_in_queue_at_end']} left in the queue at the end (sent by the next start); "
        f"{result['health_delivered']} health records delivered. Goals met: {result['goals_met']}."
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--child"]:
        return detector_child(argv[1:])
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument(
        "--drive", type=Path, default=DEFAULT_DRIVE, help="recorded drive folder (looped, paced)"
    )
    parser.add_argument("--faults", nargs="+", default=list(DEFAULT_FAULTS), help="broker:S or broker+edge:S")
    parser.add_argument(
        "--settle-s", type=float, default=5.0, help="steady running before and after each fault"
    )
    args = parser.parse_args(argv)
    for fault in args.faults:
        kind, _, seconds = fault.partition(":")
        if kind not in ("broker", "broker+edge") or not seconds.replace(".", "", 1).isdigit():
            parser.error(f"--faults {fault!r}: expected broker:S or broker+edge:S")
    result = run(args)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    print(markdown(result))
    return 0 if result["goals_met"] else 1


if __name__ == "__main__":
    sys.exit(main())
