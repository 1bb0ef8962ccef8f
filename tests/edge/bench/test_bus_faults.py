"""bench/bus_faults.py: its accounting (sent, delivered, lost, duplicated) and a short real run.

The numbers in docs/reliability.md come from the full run (1, 10 and 60 s outages, edge-detect
restarted mid-outage); the short run here keeps the bench working and its goals met on a 1 s
broker outage.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.bench_scripts import load_bench_script
from tests.edge.helpers import requires_gstreamer

bench = load_bench_script("bus_faults")


def _event(frame: int, event_id: str) -> dict:
    return {"event": "stop_sign_ahead", "frame": frame, "track_id": 1, "event_id": event_id}


def test_summary_counts_lost_duplicated_and_late() -> None:
    sent = [{k: v for k, v in _event(n, "").items() if k != "event_id"} for n in range(4)]
    sent.append(dict(sent[0]))  # a second run sends an equal event: it needs its own delivery
    received = [
        ("cars/car1/events", _event(0, "a"), 10.0),
        ("cars/car1/events", _event(1, "b"), 10.5),
        ("cars/car1/events", _event(1, "b"), 10.6),  # a QoS 1 duplicate
        ("cars/car1/events", _event(2, "c"), 12.9),
        ("cars/car1/health", {"event": "heartbeat", "event_id": "h"}, 11.0),
    ]
    outages = [{"fault": "broker:1", "t_kill": 9.0, "t_back": 10.0, "edge_started": None,
                "queued": [("event", "b"), ("event", "c"), ("health", "h"), ("event", "zz")]}]  # fmt: skip
    left = [_event(3, "d")]  # still queued when the last run stopped: not lost
    result = bench.summarise(sent, received, outages, [(9.5, 3, 4096)], left)
    assert result["events_lost"] == 1  # the second frame-0 event: one id delivered for two sent
    assert result["events_duplicated"] == 1
    assert result["events_left_in_queue_at_end"] == 1
    (row,) = result["outages"]
    assert row["last_queued_delivered_after_return_s"] == pytest.approx(2.9)
    assert row["queued_events_never_delivered"] == 1
    assert row["queue_records_max"] == 3
    assert result["goals_met"] is False


@pytest.mark.slow
@requires_gstreamer
@pytest.mark.skipif(shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists(),
                    reason="Debian's mosquitto is not installed (apt install mosquitto; ./run.sh test does)")  # fmt: skip
def test_one_broker_outage_loses_nothing(tmp_path: Path) -> None:
    out = tmp_path / "bus_faults.json"
    code = bench.main(["--faults", "broker:1", "--settle-s", "2", "--json", str(out)])
    result = json.loads(out.read_text())
    assert result["events_lost"] == 0, result
    assert result["events_sent"] > 0 and result["health_delivered"] > 0, result
    (row,) = result["outages"]
    assert row["queued_events_at_return"] + row["queued_health_at_return"] > 0, row
    assert code == 0, result
