"""Events and health to an MQTT broker (``--mqtt mqtts://HOST:PORT/PREFIX``), losing nothing.

Topics: ``PREFIX/events`` (tracker events and status events, QoS 1) and ``PREFIX/health``
(heartbeats and other rate-limited status, QoS 0). Every message is a JSON object: the event as
the events file has it, plus ``event_id`` (a random 128-bit hex id, unique per message), so a
consumer can drop the duplicates QoS 1 allows.

Store and forward: ``on_event`` only puts the record in memory for the sink's own thread, which
writes it to a bounded SQLite queue (:mod:`stopsign.edge.sinks.mqtt_queue`) and publishes from
there in order while the broker is connected. A record leaves the queue when the broker has it
(PUBACK for events), so a broker outage or an ``edge-detect`` restart loses nothing: the queue is
sent first when the broker is back. paho's network loop runs on a thread of its own
(``loop_start``) and reconnects at most 0.5 s apart. A vanished broker never stops detection.

TLS (``mqtts://``): ``--mqtt-ca`` (else the system's CAs), optional ``--mqtt-cert``/``--mqtt-key``.
Plain ``mqtt://`` is for a broker on this machine; elsewhere it warns. Credentials come from
``--mqtt-credentials FILE`` (``username=``/``password=`` lines) or ``STOPSIGN_MQTT_USERNAME`` /
``STOPSIGN_MQTT_PASSWORD``, never from the command line (``ps`` shows it to every user).
"""

from __future__ import annotations

import json
import os
import queue
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stopsign.edge.sinks.base import FrameResult, Sink, log
from stopsign.edge.sinks.mqtt_config import (
    HEALTH_KINDS,
    Credentials,
    MqttConfigError,
    MqttSettings,
    MqttTarget,
    load_credentials,
    parse_mqtt_url,
)
from stopsign.edge.sinks.mqtt_queue import RecordQueue

__all__ = [
    "Credentials",
    "MqttConfigError",
    "MqttSettings",
    "MqttSink",
    "MqttTarget",
    "load_credentials",
    "parse_mqtt_url",
    "record_kind",
]


def record_kind(event: Mapping[str, Any]) -> str:
    """``health`` for periodic status (QoS 0, dropped first when the queue is full), else ``event``."""
    return "health" if event.get("event") in HEALTH_KINDS else "event"


class MqttSink(Sink):
    """Events (QoS 1) and health (QoS 0) through an on-disk queue to a broker; see the module doc.

    ``report(kind, fields)``: where status lines go (the event channel); called on the loop's
    thread only, from ``on_frame``, never from inside ``on_event``.
    """

    name = "mqtt"

    def __init__(
        self,
        settings: MqttSettings,
        report: Callable[[str, dict[str, Any]], Any] | None = None,
        environ: Mapping[str, str] = os.environ,
    ) -> None:
        self.settings = settings
        self.target, self.credentials = settings.check(environ)
        if not self.target.tls and not self.target.loopback:
            log.warning(
                "mqtt: %s is plain MQTT to another machine: events and credentials cross the network "
                "unencrypted; use mqtts:// with --mqtt-ca",
                settings.url,
            )
        self._report = report
        self._inbox: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._inbox_max = 10_000
        self._worker: threading.Thread | None = None
        self._client: Any = None
        self._stop = threading.Event()
        self.stats = {"published": 0, "acked": 0, "dropped_health": 0, "inbox_dropped_health": 0}
        self._unreported_drops = 0
        self._last_drop_report = 0.0
        self._lock = threading.Lock()  # stats, written by the worker, read by on_frame
        self.queue_depth = 0
        self.queue_bytes = 0
        self.connected = threading.Event()
        self._warned: set[str] = set()
        self._refused = False  # the broker answered CONNACK with a refusal; cleared on success

    # --- the loop's side: enqueue only ---------------------------------------------------------

    def open(self) -> None:
        if self._worker is not None:
            return
        path = Path(self.settings.queue_path).expanduser()
        store = RecordQueue(path, self.settings.queue_max)  # a bad path fails here, by name
        self.queue_depth = len(store)
        if len(store):
            log.warning("mqtt: %d records left in %s by an earlier run are sent first", len(store), path)
        self._client = self._make_client()
        self._stop.clear()
        self._worker = threading.Thread(target=self._work, args=(store,), name="mqtt-sink", daemon=True)
        self._worker.start()
        self._client.connect_async(self.target.host, self.target.port, keepalive=10)
        self._client.loop_start()

    def on_event(self, event: dict[str, Any]) -> None:
        if self._worker is not None and not self._worker.is_alive():
            # Its error is logged; raising lets GuardedSink report it, close and reopen the sink.
            raise RuntimeError(
                f"the MQTT sink's thread has stopped; records stay in {self.settings.queue_path}"
            )
        kind = record_kind(event)
        if kind == "health" and self._inbox.qsize() >= self._inbox_max:
            # The sink's thread is behind (a stalled disk): health waits for nothing and goes
            # first; events are still taken, never dropped.
            with self._lock:
                self.stats["inbox_dropped_health"] += 1
                self._unreported_drops += 1
            return
        record = {**event, "event_id": uuid.uuid4().hex}
        self._inbox.put(("record", (kind, json.dumps(record, separators=(",", ":")).encode())))

    def on_frame(self, result: FrameResult) -> None:
        with self._lock:
            drops = self._unreported_drops
            if not drops or time.monotonic() - self._last_drop_report < 10.0:
                return
            self._unreported_drops = 0
            self._last_drop_report = time.monotonic()
            fields = {
                "sink": self.name,
                "dropped_health": self.stats["dropped_health"] + self.stats["inbox_dropped_health"],
                "dropped_since_last": drops,
                "queue_records": self.queue_depth,
                "queue_max": self.settings.queue_max,
            }
        log.warning(
            "mqtt: queue full (%d records): dropped %d health records, no event", self.queue_depth, drops
        )
        if self._report is not None:
            self._report("mqtt_queue_full", fields)

    def close(self) -> None:
        if self._worker is None:
            return
        self._inbox.put(("close", None))
        self._worker.join(timeout=5.0)
        self._worker = None
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
            self._client = None

    # --- paho's network thread: only posts to the inbox ----------------------------------------

    def _make_client(self) -> Any:
        import paho.mqtt.client as mqtt

        client_id = (
            self.settings.client_id
            or f"stopsign-{self.credentials.username if self.credentials else socket.gethostname()}"
        )
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311, clean_session=True
        )
        if self.target.tls:
            client.tls_set_context(self.settings.tls_context())
        if self.credentials is not None:
            client.username_pw_set(self.credentials.username, self.credentials.password)
        client.reconnect_delay_set(min_delay=0.25, max_delay=self.settings.reconnect_max_s)  # type: ignore[arg-type]
        client.max_inflight_messages_set(self.settings.inflight)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = lambda _c, _u, mid, _rc, _p: self._inbox.put(("ack", mid))
        return client

    def _on_connect(self, _client: Any, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if reason.is_failure:
            who = (
                f"user {self.credentials.username!r} from {self.credentials.origin}"
                if self.credentials
                else "no username"
            )
            self._warn_once(
                f"refused: {reason}", f"broker {self._where()} refused the connection: {reason} ({who})"
            )
            self._refused = True  # the disconnects that follow are this refusal, already reported
            return
        self._warned, self._refused = set(), False
        log.info("mqtt: connected to %s", self._where())
        self.connected.set()
        self._inbox.put(("connected", None))

    def _on_connect_fail(self, _client: Any, _userdata: Any) -> None:
        # paho calls this inside its `except OSError`: the exception in flight is the reason.
        exc = sys.exc_info()[1]
        why = f"{type(exc).__name__}: {exc}" if exc is not None else "unknown error"
        self._warn_once(f"fail: {type(exc).__name__}", f"cannot reach broker {self._where()} ({why})")

    def _on_disconnect(self, _client: Any, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        was_connected = self.connected.is_set()
        self.connected.clear()
        self._inbox.put(("disconnected", None))
        if was_connected and not self._stop.is_set():
            self._warn_once(
                "lost", f"lost broker {self._where()} ({reason}); queueing to {self.settings.queue_path}"
            )
        elif not was_connected and not self._refused and not self._stop.is_set():
            # Closed before CONNACK: over TLS 1.3 a missing client certificate shows up this way.
            hint = "" if self.settings.cert else " (does it require a client certificate? --mqtt-cert)"
            self._warn_once(
                "closed", f"broker {self._where()} closed the connection before accepting it: {reason}{hint}"
            )

    def _warn_once(self, key: str, message: str) -> None:
        """One warning per kind of failure until the next successful connection."""
        if key not in self._warned:
            self._warned.add(key)
            log.warning("mqtt: %s", message)

    def _where(self) -> str:
        return f"{self.target.host}:{self.target.port}"

    # --- the sink's own thread: the only user of the SQLite queue ------------------------------

    def _work(self, store: RecordQueue) -> None:
        inflight: dict[int, int] = {}  # paho mid -> queue seq
        state = _WorkerState()
        try:
            while not state.closing:
                items = self._take_inbox()
                pending: list[tuple[str, str, int, bytes]] = []
                acked: list[int] = []
                for what, value in items:
                    if what == "record":
                        pending.append(self._as_queued(*value))
                    elif what == "ack" and value in inflight:
                        acked.append(inflight.pop(value))
                    elif what == "connected":
                        state.online = True
                        # paho resends what it had in flight first; new records wait for those acks
                        state.drain_until = time.monotonic() + 5.0 if inflight else None
                    elif what == "disconnected":
                        state.online = False
                    elif what == "close":
                        state.closing = True
                self._store(store, pending, acked)
                if state.drain_until is not None and (not inflight or time.monotonic() > state.drain_until):
                    state.drain_until = None
                if state.online and state.drain_until is None:
                    self._publish_next(store, inflight, state)
                self.queue_depth = len(store)
            self._finish(store, inflight, state)
        except Exception as exc:  # the worker must say why it died; detection goes on regardless
            log.error(
                "mqtt: sink thread failed (%s: %s); events stay queued in %s",
                type(exc).__name__,
                exc,
                store.path,
            )
            raise
        finally:
            self.queue_bytes = store.disk_bytes()
            store.close()

    def _take_inbox(self, wait_s: float = 0.05, most: int = 1000) -> list[tuple[str, Any]]:
        items: list[tuple[str, Any]] = []
        try:
            items.append(self._inbox.get(timeout=wait_s))
            while len(items) < most:
                items.append(self._inbox.get_nowait())
        except queue.Empty:
            pass
        return items

    def _as_queued(self, kind: str, payload: bytes) -> tuple[str, str, int, bytes]:
        if kind == "event":
            return kind, self.target.events_topic, 1, payload
        return kind, self.target.health_topic, 0, payload

    def _store(
        self, store: RecordQueue, pending: list[tuple[str, str, int, bytes]], acked: list[int]
    ) -> None:
        if pending:
            result = store.push_many(pending)
            if result.dropped_health:
                with self._lock:
                    self.stats["dropped_health"] += result.dropped_health
                    self._unreported_drops += result.dropped_health
        if acked:
            store.remove(acked)
            with self._lock:
                self.stats["acked"] += len(acked)

    def _publish_next(self, store: RecordQueue, inflight: dict[int, int], state: _WorkerState) -> None:
        room = self.settings.inflight - len(inflight)
        if room <= 0:
            return
        records = store.after(state.last_seq, room)
        for record in records:
            info = self._client.publish(record.topic, record.payload, qos=record.qos)
            inflight[info.mid] = record.seq
            state.last_seq = record.seq
        with self._lock:
            self.stats["published"] += len(records)

    def _finish(self, store: RecordQueue, inflight: dict[int, int], state: _WorkerState) -> None:
        """At close: store what is left in the inbox and, while connected, send what is queued (the
        ``stopped`` line is usually in the last batch) and wait for the acks, for up to 1 s, so
        the next run has less to resend. Whatever is not acknowledged stays in the queue file."""
        self._stop.set()
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            waiting = bool(inflight) or bool(store.after(state.last_seq, 1))
            items = self._take_inbox(wait_s=0.05 if waiting and state.online else 0.0)
            if any(what == "disconnected" for what, _ in items):
                state.online = False
            pending = [self._as_queued(*value) for what, value in items if what == "record"]
            acked = [inflight.pop(v) for what, v in items if what == "ack" and v in inflight]
            self._store(store, pending, acked)
            if not inflight:
                state.drain_until = None
            if state.online and state.drain_until is None:
                self._publish_next(store, inflight, state)
            if not items and not (state.online and (inflight or store.after(state.last_seq, 1))):
                break
        self.queue_depth = len(store)


@dataclass
class _WorkerState:
    """The worker's view of the connection: ``last_seq`` is the highest seq handed to paho."""

    online: bool = False
    closing: bool = False
    drain_until: float | None = None
    last_seq: int = 0
