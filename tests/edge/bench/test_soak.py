"""bench/soak.py --frames on a recorded drive: replayed past its end, rows per block, rotation kept.

The million-frame run in docs/reliability.md uses the same code; this runs a few hundred frames.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.bench_scripts import load_bench_script
from tests.edge.helpers import requires_gstreamer

REPO = Path(__file__).resolve().parents[3]


@requires_gstreamer
def test_frames_mode_replays_the_drive_and_keeps_every_heartbeat(
    tiny_onnx: Path, tmp_path: Path, monkeypatch
) -> None:
    soak = load_bench_script("soak")
    out = tmp_path / "soak"
    argv = ["soak.py", "--mode", "replay", "--model", str(tiny_onnx), "--frames", "400", "--block", "100", "--sample-s", "0.2",
            "--warmup-s", "0", "--events-max-bytes", "2000", "--out", str(out),
            "--source", f"drive://{REPO / 'samples' / 'drives' / 'day_approach'}"]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    soak.main()
    result = json.loads((out / "soak.json").read_text())
    assert result["exit_code"] == 0
    # The 60-frame drive was replayed: 400 frames ran, with continuous frame indices.
    stopped = json.loads((out / "events.jsonl").read_text().splitlines()[-1])
    assert stopped["event"] == "stopped" and stopped["frames"] == 400 and stopped["frame"] == 399
    rows = [row["frames"] for row in result["blocks"]]
    assert rows and rows == list(range(100, 100 * len(rows) + 1, 100))  # up to the last heartbeat
    # Rotation kept at most 3 old files, yet the heartbeats of the whole run were followed.
    assert len(list(out.glob("events.jsonl.*"))) <= 3
    beats = result["latency"]
    assert beats and len(beats) >= result["summary"]["heartbeats"] >= 1
    # No fd growth. A sample taken mid-rebuild sees one pipeline going and the next coming (the 1M
    # replay soak saw 13-24 fds around its usual 20), so the rows may differ by that much, no more.
    fds = [row["fds"] for row in result["blocks"]]
    assert max(fds) - min(fds) <= 8, fds


@requires_gstreamer
def test_live_mode_keeps_one_source_for_the_whole_run(tiny_onnx: Path, tmp_path: Path, monkeypatch) -> None:
    soak = load_bench_script("soak")
    out = tmp_path / "live"
    argv = ["soak.py", "--model", str(tiny_onnx), "--frames", "120", "--block", "40", "--sample-s", "0.2",
            "--warmup-s", "0", "--out", str(out), "--source", "test://?pattern=ball&size=160x120&fps=60"]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    soak.main()
    result = json.loads((out / "soak.json").read_text())
    assert result["exit_code"] == 0 and result["config"]["mode"] == "live"
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    kinds = [event["event"] for event in events]
    assert kinds.count("started") == 1 and "source_rebuilding" not in kinds  # built once, never rebuilt
    assert events[-1]["event"] == "stopped" and events[-1]["frames"] == 120


@pytest.mark.parametrize(
    "argv",
    [
        ["--mode", "replay"],
        ["--mode", "replay", "--source", "test://"],
        ["--mode", "live", "--source", "drive://x"],
    ],
)
def test_a_source_that_does_not_fit_the_mode_is_an_error(
    tiny_onnx: Path, monkeypatch, argv: list[str]
) -> None:
    soak = load_bench_script("soak")
    monkeypatch.setattr(sys, "argv", ["soak.py", "--model", str(tiny_onnx), *argv])
    with pytest.raises(SystemExit) as exit_info:
        soak.main()
    assert exit_info.value.code == 2


def beat(frame: int, t_s: float) -> dict:
    return {"monotonic_ns": int(t_s * 1e9), "frame": frame, "fps": 100.0, "p50_ms": 1.0, "p99_ms": 2.0}


def sample_at(t_s: float, rss: float) -> dict:
    return {
        "t_s": t_s,
        "monotonic_ns": int(t_s * 1e9),
        "rss_mb": rss,
        "fds": 5,
        "threads": 3,
        "events_bytes": 0,
    }


@pytest.mark.parametrize(
    ("rss", "expected", "growth_pct"),
    [
        # two blocks of 100 frames (heartbeats at 100 fps: block 1 ends at frame 90's beat, 0.9 s),
        # four samples in each
        ([100, 107, 100, 107, 101, 108, 101, 108], [(100, 103.5, 107), (101, 104.5, 108)], 0.93),
        ([100, 100, 100, 100, 100, 100, 100, 130], [(100, 100, 100), (100, 100, 130)], 30.0),
    ],
)
def test_each_block_has_the_range_of_its_own_samples(
    rss: list[float], expected: list[tuple], growth_pct: float
) -> None:
    soak = load_bench_script("soak")
    times = [0.2, 0.4, 0.6, 0.8, 1.2, 1.4, 1.6, 1.8]
    samples = [sample_at(t, value) for t, value in zip(times, rss)]
    beats = [beat(frame, frame / 100) for frame in range(10, 200, 10)] + [beat(199, 2.0)]
    rows = soak.blocks(samples, beats, 100)
    got = [(r["rss_block_min_mb"], r["rss_block_median_mb"], r["rss_block_max_mb"]) for r in rows]
    assert got == expected
    assert soak.envelope_growth(rows) == growth_pct
    assert soak.envelope_growth(rows[:1]) is None
