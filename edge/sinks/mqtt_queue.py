"""The MQTT sink's store and forward queue: a bounded SQLite file (WAL) every record goes through.

A record is one MQTT message waiting for the broker: ``seq`` (its place in the order, from
SQLite's AUTOINCREMENT, so it never goes back even after the file empties), ``kind`` (``event``
or ``health``), topic, QoS and the JSON payload (bytes). A record is deleted only when the broker
has it: a PUBACK for QoS 1 events, the write to the socket for QoS 0 health. Whatever is still in
the file when ``edge-detect`` stops is sent first by the next run.

Bound: ``max_records``. When an insert finds the queue full, the oldest health records are
deleted to make room; events are never deleted for room. A queue full of events only still takes
the new event (the bound is then exceeded, and :attr:`over_bound` says so): an event is worth more
than the bound, and the disk is the last limit.

Only one thread may use a :class:`RecordQueue` (SQLite connections are not shared here): the MQTT
sink's own worker thread.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL CHECK (kind IN ('event', 'health')),
    topic TEXT NOT NULL,
    qos INTEGER NOT NULL,
    payload BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS records_kind ON records (kind, seq);
"""


class QueueFileError(RuntimeError):
    """The queue file cannot be opened or is not a queue of this sink (the message names it)."""


@dataclass(frozen=True)
class Record:
    """One queued MQTT message. ``seq``: order of arrival; ``payload``: UTF-8 JSON bytes."""

    seq: int
    kind: str
    topic: str
    qos: int
    payload: bytes


@dataclass
class PushResult:
    """What one :meth:`RecordQueue.push_many` did: how many health records it dropped for room."""

    stored: int = 0
    dropped_health: int = 0


class RecordQueue:
    """A bounded FIFO of :class:`Record` in a SQLite file (WAL journal, survives restarts)."""

    def __init__(self, path: str | Path, max_records: int = 10_000) -> None:
        if max_records < 1:
            raise ValueError(f"max_records must be >= 1, got {max_records}")
        self.path = Path(path)
        self.max_records = max_records
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            # WAL: an insert appends to the log instead of rewriting pages; NORMAL: no fsync per
            # commit (a crashed process loses nothing; a power cut may lose the last commits).
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            # Every record is a commit of a few pages: checkpoint the WAL every 64 pages and cut it
            # back to 256 kB, so the file on disk stays near the size of what is queued.
            self._db.execute("PRAGMA wal_autocheckpoint=64")
            self._db.execute("PRAGMA journal_size_limit=262144")
            self._db.executescript(SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise QueueFileError(
                f"MQTT queue {self.path}: cannot open it as an SQLite queue ({exc})"
            ) from None
        self._count = self._scalar("SELECT COUNT(*) FROM records")

    def _scalar(self, sql: str, *args: object) -> int:
        row = self._db.execute(sql, args).fetchone()
        return int(row[0] or 0)

    def __len__(self) -> int:
        return self._count

    @property
    def over_bound(self) -> bool:
        return self._count > self.max_records

    def count(self, kind: str) -> int:
        return self._scalar("SELECT COUNT(*) FROM records WHERE kind = ?", kind)

    def push_many(self, items: Iterable[tuple[str, str, int, bytes]]) -> PushResult:
        """Append ``(kind, topic, qos, payload)`` items in one transaction, dropping the oldest
        health records when the bound is reached (never an event)."""
        result = PushResult()
        items = list(items)
        if not items:
            return result
        self._db.execute("BEGIN IMMEDIATE")
        try:
            for kind, topic, qos, payload in items:
                if self._count >= self.max_records:
                    if self._drop_oldest_health():
                        result.dropped_health += 1
                    elif kind == "health":  # full of events: the new health record is the one to go
                        result.dropped_health += 1
                        continue
                self._db.execute(
                    "INSERT INTO records (kind, topic, qos, payload) VALUES (?, ?, ?, ?)",
                    (kind, topic, qos, payload),
                )
                self._count += 1
                result.stored += 1
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            self._count = self._scalar("SELECT COUNT(*) FROM records")
            raise
        return result

    def _drop_oldest_health(self) -> bool:
        cursor = self._db.execute(
            "DELETE FROM records WHERE seq = (SELECT seq FROM records WHERE kind = 'health' ORDER BY seq LIMIT 1)"
        )
        if cursor.rowcount:
            self._count -= 1
            return True
        return False

    def after(self, seq: int, limit: int) -> list[Record]:
        """Up to ``limit`` records with a ``seq`` above ``seq``, oldest first."""
        rows = self._db.execute(
            "SELECT seq, kind, topic, qos, payload FROM records WHERE seq > ? ORDER BY seq LIMIT ?",
            (seq, limit),
        ).fetchall()
        return [Record(int(s), str(k), str(t), int(q), bytes(p)) for s, k, t, q, p in rows]

    def remove(self, seqs: Iterable[int]) -> int:
        """Delete the records the broker has; returns how many were still there."""
        seqs = list(seqs)
        if not seqs:
            return 0
        cursor = self._db.executemany("DELETE FROM records WHERE seq = ?", [(s,) for s in seqs])
        removed = max(cursor.rowcount, 0)
        self._count -= removed
        return removed

    def disk_bytes(self) -> int:
        """Bytes of the database file and its WAL and shared-memory files."""
        total = 0
        for suffix in ("", "-wal", "-shm"):
            try:
                total += Path(f"{self.path}{suffix}").stat().st_size
            except FileNotFoundError:
                continue
        return total

    def close(self) -> None:
        try:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            self._db.close()
