"""The MQTT sink's SQLite queue: order, the bound (health goes, events stay), surviving a reopen."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from stopsign.edge.sinks.mqtt_queue import QueueFileError, RecordQueue


def _item(kind: str, n: int) -> tuple[str, str, int, bytes]:
    return kind, f"cars/car1/{kind}", 1 if kind == "event" else 0, json.dumps({"n": n}).encode()


def _numbers(queue: RecordQueue) -> list[tuple[str, int]]:
    return [(r.kind, json.loads(r.payload)["n"]) for r in queue.after(0, 1000)]


def test_records_come_back_in_order_and_leave_when_removed(tmp_path: Path) -> None:
    queue = RecordQueue(tmp_path / "q.sqlite", max_records=100)
    queue.push_many([_item("event", 0), _item("health", 1), _item("event", 2)])
    records = queue.after(0, 10)
    assert [json.loads(r.payload)["n"] for r in records] == [0, 1, 2]
    assert [r.qos for r in records] == [1, 0, 1]
    assert queue.after(records[0].seq, 10) == records[1:]
    assert queue.remove([records[1].seq, records[1].seq + 1000]) == 1
    assert _numbers(queue) == [("event", 0), ("event", 2)]
    assert len(queue) == 2


def test_full_queue_drops_oldest_health_never_an_event(tmp_path: Path) -> None:
    queue = RecordQueue(tmp_path / "q.sqlite", max_records=4)
    queue.push_many([_item("health", 0), _item("event", 1), _item("health", 2), _item("event", 3)])
    result = queue.push_many([_item("event", 4)])
    assert (result.stored, result.dropped_health) == (1, 1)
    assert _numbers(queue) == [("event", 1), ("health", 2), ("event", 3), ("event", 4)]
    result = queue.push_many([_item("health", 5)])  # the oldest health (2) makes room for the newest
    assert _numbers(queue) == [("event", 1), ("event", 3), ("event", 4), ("health", 5)]
    result = queue.push_many([_item("event", 6), _item("health", 7)])
    # Only events left after 6 evicts 5: the new health record is the one dropped.
    assert (result.stored, result.dropped_health) == (1, 2)
    assert _numbers(queue) == [("event", 1), ("event", 3), ("event", 4), ("event", 6)]
    queue.push_many([_item("event", 8)])  # full of events: the event is kept over the bound
    assert queue.over_bound and len(queue) == 5
    assert queue.count("event") == 5


def test_queue_survives_a_reopen_and_keeps_counting_up(tmp_path: Path) -> None:
    path = tmp_path / "q.sqlite"
    first = RecordQueue(path)
    first.push_many([_item("event", n) for n in range(3)])
    last_seq = first.after(0, 10)[-1].seq
    first.remove([last_seq])
    first.close()
    second = RecordQueue(path)
    assert _numbers(second) == [("event", 0), ("event", 1)]
    second.push_many([_item("event", 9)])
    assert second.after(0, 10)[-1].seq > last_seq  # AUTOINCREMENT: never reuses a removed seq
    assert second.disk_bytes() > 0
    journal = sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0]
    assert journal == "wal"


def test_a_file_that_is_not_a_queue_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "q.sqlite"
    bad.write_text("not a database, just text that is long enough to be read as a header " * 20)
    with pytest.raises(QueueFileError, match="q.sqlite"):
        RecordQueue(bad)
