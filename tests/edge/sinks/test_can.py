"""CAN output: the DBC, the frames (counter, CRC-8 SAE J1850), the status rate and its stall
policy, bus outages, and edge-detect sending to a bus in another process over 127.0.0.1.

This VM's kernel has no ``vcan`` module, so no SocketCAN bus can be made: the in-process tests use
python-can's ``virtual`` bus, the cross-process ones python-can-remote's server on 127.0.0.1
(``bench/can_loopback.py``). Nothing here uses multicast.
"""

from __future__ import annotations

import itertools
import logging
import random
import socket
import time
import uuid
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

can = pytest.importorskip("can", reason="python-can is not installed (pip install 'stopsign-edge[can]')")
pytest.importorskip("cantools", reason="cantools is not installed (pip install 'stopsign-edge[can]')")

from stopsign.edge.sinks import FrameResult  # noqa: E402
from stopsign.edge.sinks.can import CanConfig, CanSink, event_signals, parse_can_target  # noqa: E402
from stopsign.edge.sinks.can_dbc import (  # noqa: E402
    DEFAULT_DBC,
    EVENT_MESSAGE,
    STATUS_MESSAGE,
    DbcError,
    FrameEncoder,
    crc8_sae_j1850,
    load_dbc,
)
from stopsign.edge.sinks.can_status import DetectorState, StatusTiming  # noqa: E402
from stopsign.edge.vision.detections import Detections  # noqa: E402
from stopsign.edge.vision.frame import Frame  # noqa: E402
from stopsign.edge.vision.result import FrameTimings  # noqa: E402
from tests.bench_scripts import load_bench_script  # noqa: E402

REPO = Path(__file__).resolve().parents[3]
DEPLOY_DBC = REPO / "deploy" / "can" / "stopsign.dbc"
DRIVE = REPO / "samples" / "drives" / "day_approach"


def reference_crc8_j1850(data: bytes) -> int:
    """CRC-8 SAE J1850 bit by bit from its definition (poly 0x1D, init 0xFF, xorout 0xFF)."""
    crc = 0xFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1D) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc ^ 0xFF


def assert_frame_sound(database: Any, frame_id: int, data: bytes) -> dict[str, Any]:
    """Decodes with cantools against the DBC, checks the CRC; returns the signals."""
    message = database.get_message_by_frame_id(frame_id)
    signals = message.decode(data, decode_choices=True)
    assert data[0] == reference_crc8_j1850(data[1:]), f"{message.name} {data.hex()}: CRC wrong"
    return dict(signals, message=message.name)


def frame_result(index: int, processed: bool = True) -> FrameResult:
    image = np.zeros((360, 640, 3), np.uint8)
    detections = Detections.empty() if processed else None
    return FrameResult(Frame(index, index, index, image), detections, FrameTimings())


AHEAD = {
    "event": "stop_sign_ahead",
    "track_id": 70,
    "box": [300.0, 100.0, 340.0, 150.0],
    "score": 0.93,
    "distance_m": 41.3,
    "time_to_sign_s": None,
}


# --- the DBC -----------------------------------------------------------------------------------


def test_dbc_loads_without_warning_and_is_the_shipped_default(caplog: pytest.LogCaptureFixture) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        caplog.set_level(logging.DEBUG)
        database = load_dbc(DEPLOY_DBC)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    assert DEFAULT_DBC.read_bytes() == DEPLOY_DBC.read_bytes()
    status = database.get_message_by_name(STATUS_MESSAGE)
    assert status.cycle_time == 100 and status.length == 8
    assert database.get_message_by_name(EVENT_MESSAGE).length == 8


def test_crc_is_sae_j1850() -> None:
    assert crc8_sae_j1850(b"123456789") == 0x4B  # the catalogue's check value
    rng = random.Random(0)
    for _ in range(200):
        data = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 9)))
        assert crc8_sae_j1850(data) == reference_crc8_j1850(data)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (event_signals(AHEAD, (640, 360)), {"EventKind": "stop_sign_ahead", "TrackId": 6, "Distance": 41.5}),
        # Beyond the DBC's ranges: saturated, never an encoding error.
        (
            {**event_signals(AHEAD, (640, 360)), "Distance": 300.0, "TimeToSign": 99.0, "Confidence": 1.5},
            {"Distance": 127.0, "Confidence": 1.0},
        ),
        # Unknown values go out as SNA (no frame size yet: no box).
        (event_signals(AHEAD, None), {"TimeToSign": "SNA", "BoxCentreX": "SNA", "BoxHeight": "SNA"}),
    ],
)
def test_event_encoding_round_trips(values: dict[str, Any], expected: dict[str, Any]) -> None:
    database = load_dbc(DEFAULT_DBC)
    frame = FrameEncoder(database).encode(EVENT_MESSAGE, values)
    decoded = assert_frame_sound(database, frame.frame_id, frame.data)
    for name, value in expected.items():
        assert decoded[name] == pytest.approx(value) if not isinstance(value, str) else decoded[name] == value
    if values["BoxCentreX"] is not None:
        assert decoded["BoxCentreX"] == pytest.approx(320 / 640, abs=0.002)
        assert decoded["BoxHeight"] == pytest.approx(50 / 360, abs=0.004)


def test_counters_count_per_message_and_wrap_at_16() -> None:
    database = load_dbc(DEFAULT_DBC)
    encoder = FrameEncoder(database)
    status = {"State": "ok", "Fps": 30.0, "LatencyP99": None, "TrackedSigns": 0}
    counters = [
        assert_frame_sound(database, f.frame_id, f.data)["AliveCounter"]
        for f in (encoder.encode(STATUS_MESSAGE, status) for _ in range(18))
    ]
    assert counters == [*range(16), 0, 1]
    first_event = encoder.encode(EVENT_MESSAGE, event_signals(AHEAD, None))
    assert assert_frame_sound(database, first_event.frame_id, first_event.data)["AliveCounter"] == 0


def _edited_dbc(tmp_path: Path, old: str, new: str) -> Path:
    text = DEFAULT_DBC.read_text()
    assert old in text
    out = tmp_path / "user.dbc"
    out.write_text(text.replace(old, new))
    return out


@pytest.mark.parametrize(
    ("old", "new", "says"),
    [
        (" SG_ TrackId : 13|6@1+ (1,0) [0|63] \"\" PLANNER\n", "", "StopSignEvent has no signal TrackId"),
        ("BO_ 801 DetectorStatus:", "BO_ 801 DetectorHealth:", "message DetectorStatus"),
        ('2 "stalled_source"', '2 "stalled"', "DetectorStatus.State has no value stalled_source"),
        ("SG_ Crc8 : 0|8@1+ (1,0) [0|255] \"\" PLANNER\n SG_ AliveCounter : 8|4",
         "SG_ Crc8 : 4|8@1+ (1,0) [0|255] \"\" PLANNER\n SG_ AliveCounter : 0|4", "Crc8 must fill one byte"),
    ],
)  # fmt: skip
def test_a_dbc_lacking_what_is_sent_is_named(tmp_path: Path, old: str, new: str, says: str) -> None:
    path = _edited_dbc(tmp_path, old, new)
    with pytest.raises(DbcError, match=says) as caught:
        load_dbc(path)
    assert str(path) in str(caught.value)


@pytest.mark.parametrize(
    ("text", "result"),
    [
        ("socketcan:can0", ("socketcan", "can0")),
        ("remote:ws://127.0.0.1:54701/", ("remote", "ws://127.0.0.1:54701/")),
        ("virtual:ch0", ("virtual", "ch0")),
        ("pcann:PCAN_USBBUS1", "unknown CAN interface 'pcann'"),
        ("can0", "INTERFACE:CHANNEL"),
        ("socketcan:", "INTERFACE:CHANNEL"),
    ],
)
def test_parse_can_target(text: str, result: tuple[str, str] | str) -> None:
    if isinstance(result, tuple):
        assert parse_can_target(text) == result
    else:
        with pytest.raises(ValueError, match=result):
            parse_can_target(text)


# --- what the status says ------------------------------------------------------------------------


def test_status_states_and_the_stall_policy() -> None:
    now = [100.0]
    state = DetectorState(StatusTiming(), clock=lambda: now[0])

    def after(seconds: float) -> str | None:
        now[0] += seconds
        snapshot = state.snapshot()
        return None if snapshot is None else snapshot.state

    assert after(0.1) == "starting"
    state.on_frame(frame_result(0))
    assert after(0.1) == "ok"
    state.on_event({"event": "over_budget"})
    assert after(0.1) == "over_budget"
    state.on_frame(frame_result(1, processed=False))  # inference failed on this frame
    assert after(0.1) == "backend_error"
    assert after(1.5) == "stalled_source"  # no frame processed for 0.5 s: blind, and says so
    state.on_event({"event": "heartbeat", "p99_ms": 42.0})  # the loop lives on, the source is stalled
    assert after(1.0) == "stalled_source"
    assert after(1.1) is None  # 2.1 s without a call from the loop: withheld, the ECU's timeout trips
    state.on_frame(frame_result(2))
    assert after(0.1) == "ok"
    state.on_event(AHEAD)
    snapshot = state.snapshot()
    assert snapshot is not None and snapshot.tracked_signs == 1 and snapshot.latency_p99_ms == 42.0
    state.on_event({**AHEAD, "event": "stop_sign_lost"})
    state.on_event({"event": "stopped"})
    snapshot = state.snapshot()
    assert snapshot is not None and snapshot.tracked_signs == 0 and snapshot.state == "stopping"


# --- the sink on python-can's virtual bus -------------------------------------------------------


@pytest.fixture
def virtual_channel() -> Any:
    channel = f"test-{uuid.uuid4().hex[:8]}"
    bus = can.Bus(interface="virtual", channel=channel)
    yield channel, bus
    bus.shutdown()


def _received(bus: Any, database: Any, wait_s: float = 0.05) -> list[dict[str, Any]]:
    out = []
    while (message := bus.recv(wait_s)) is not None:
        out.append(
            dict(assert_frame_sound(database, message.arbitration_id, message.data), t=message.timestamp)
        )
    return out


def test_status_keeps_its_rate_whatever_the_frame_rate_and_events_go_at_once(virtual_channel: Any) -> None:
    channel, bus = virtual_channel
    database = load_dbc(DEFAULT_DBC)
    sink = CanSink(CanConfig(f"virtual:{channel}"))
    sink.open()
    frame_period = 1 / 15  # one frame of the sample drives' camera (15 fps)
    frames: list[dict[str, Any]] = []
    try:
        start = time.monotonic()
        index = 0
        while time.monotonic() - start < 2.0:
            # Frames in bursts and gaps (20 ms to 300 ms apart): the status must not follow them.
            sink.on_frame(frame_result(index))
            index += 1
            if index == 20:
                frames += _received(bus, database, wait_s=0.0)  # the status frames so far
                before = time.monotonic()
                sink.on_event(AHEAD)
                assert time.monotonic() - before < 0.005, "on_event blocked the loop"
                deadline = before + frame_period  # within one frame
                while (left := deadline - time.monotonic()) > 0 and (message := bus.recv(left)) is not None:
                    frames.append(
                        dict(
                            assert_frame_sound(database, message.arbitration_id, message.data),
                            t=message.timestamp,
                        )
                    )
                    if frames[-1]["message"] == EVENT_MESSAGE:
                        break
                assert frames[-1]["message"] == EVENT_MESSAGE, "no StopSignEvent within one frame"
            time.sleep(0.3 if index % 7 == 0 else 0.02)
    finally:
        sink.close()
    frames += _received(bus, database)
    assert [f["message"] for f in frames].count(EVENT_MESSAGE) == 1
    status = [f for f in frames if f["message"] == STATUS_MESSAGE]
    assert status[-1]["State"] == "stopping"
    times = np.array([f["t"] for f in status[:-1]])
    rate = (len(times) - 1) / (times[-1] - times[0])
    assert 9.0 <= rate <= 11.0, f"status at {rate:.2f} Hz"
    counters = [f["AliveCounter"] for f in status]
    assert all(b == (a + 1) % 16 for a, b in itertools.pairwise(counters))


def test_a_stalled_loop_silences_the_status_until_it_is_back(virtual_channel: Any) -> None:
    channel, bus = virtual_channel
    database = load_dbc(DEFAULT_DBC)
    timing = StatusTiming(stale_frame_s=0.2, loop_timeout_s=0.5)
    sink = CanSink(CanConfig(f"virtual:{channel}", timing=timing))
    sink.open()
    try:
        sink.on_frame(frame_result(0))
        time.sleep(1.2)  # the loop hangs: no call at all
        for index in range(1, 16):  # and is back, at 50 frames/s for 0.3 s
            sink.on_frame(frame_result(index))
            time.sleep(0.02)
    finally:
        sink.close()
    status = [f for f in _received(bus, database) if f["message"] == STATUS_MESSAGE]
    gaps = np.diff([f["t"] for f in status])
    assert gaps.max() > 0.6, "the status went on through a hung loop"
    states = [f["State"] for f in status]
    before_gap, after_gap = states[: int(gaps.argmax()) + 1], states[int(gaps.argmax()) + 1 :]
    assert "stalled_source" in before_gap and "ok" in after_gap[:-1], states
    assert sink.withheld_status >= 5


def test_a_missing_interface_is_reported_retried_and_does_not_block() -> None:
    reports: list[tuple[str, dict[str, Any]]] = []
    sink = CanSink(
        CanConfig("socketcan:stopsign9", retry_initial_s=0.1, retry_max_s=0.2),
        report=lambda kind, fields: reports.append((kind, fields)),
    )
    sink.open()
    try:
        time.sleep(0.5)
        before = time.monotonic()
        for index in range(30):
            sink.on_frame(frame_result(index))
            sink.on_event(AHEAD)
        # A send waiting on the bus would take a retry (0.1 s) per call; 60 calls stay far below.
        assert time.monotonic() - before < 0.5
    finally:
        sink.close()
    assert [kind for kind, _ in reports] == ["sink_error"]  # once per outage, not per retry
    assert "socketcan:stopsign9" in reports[0][1]["bus"]
    assert sink.sent[STATUS_MESSAGE] == 0 and sink.dropped_events == 30


# --- across processes, over 127.0.0.1 -------------------------------------------------------------


loopback = load_bench_script("can_loopback")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_lost_bus_is_reported_and_recovered() -> None:
    port = _free_port()
    reports: list[str] = []
    sink = CanSink(
        CanConfig(f"remote:ws://127.0.0.1:{port}/", retry_initial_s=0.1, retry_max_s=0.2),
        report=lambda kind, fields: reports.append(kind),
    )
    sink.open()

    def beat(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            sink.on_frame(frame_result(0))
            time.sleep(0.05)

    try:
        beat(0.3)  # no server yet
        with loopback.LoopbackCanBus(port=port) as bus:
            beat(1.0)
            assert bus.frames(), "nothing arrived once the server was up"
        beat(1.5)  # the server is gone: the next sends fail
        with loopback.LoopbackCanBus(port=port) as bus:
            beat(1.0)
            again = bus.frames()
    finally:
        sink.close()
    assert reports == ["sink_error", "sink_restored", "sink_error", "sink_restored"]
    assert again


@pytest.mark.skipif(not DRIVE.is_dir(), reason="samples/drives/day_approach is not in this checkout")
def test_edge_detect_frames_on_a_bus_in_another_process() -> None:
    database = load_dbc(DEFAULT_DBC)
    with loopback.LoopbackCanBus() as bus:
        # 40 of the drive's 60 frames: the sign is confirmed at frame 2, and lost when the run ends.
        args = ["--source", f"drive://{DRIVE}", "--max-frames", "40", "--no-health", "--can", bus.target]
        run = loopback.run_detect_stamped(args)
        time.sleep(0.2)  # the last frames cross the websocket
        frames = bus.frames()
    assert run.returncode == 0, run.stderr[-2000:]
    decoded = loopback.decode_frames(frames, database)
    assert decoded and all(d.get("crc_ok") for d in decoded), [d for d in decoded if not d.get("crc_ok")]
    for frame in frames:
        assert_frame_sound(database, frame.frame_id, frame.payload)  # cantools decodes every frame
    assert loopback.counter_gaps(decoded, STATUS_MESSAGE) == 0
    assert loopback.counter_gaps(decoded, EVENT_MESSAGE) == 0
    rate = loopback.status_rate(frames, database)
    assert 9.0 <= rate["rate_hz"] <= 11.0, rate

    # Each JSON event has its frame, in order, no later than one processed frame after it.
    delays = loopback.event_delays_ms(run, frames, database)
    assert [d["event"] for d in delays] == ["stop_sign_ahead", "stop_sign_lost"]
    assert len(frames) and all("can" in d for d in delays), delays
    assert [d["can"]["EventKind"] for d in delays] == [d["event"] for d in delays]
    assert [d["can"]["TrackId"] for d in delays] == [d["track_id"] % 64 for d in delays]
    frame_ms = loopback.frame_period_ms(run)
    assert frame_ms is not None
    for row in delays:
        assert row["delay_ms"] < frame_ms, (row, frame_ms)
    # Nothing else on the bus: exactly one StopSignEvent per event.
    assert sum(d.get("message") == EVENT_MESSAGE for d in decoded) == len(delays)


def test_a_reopened_sink_is_no_longer_stopping(virtual_channel: Any) -> None:
    """GuardedSink closes and reopens a sink after a failure: the status must say ok again."""
    channel, bus = virtual_channel
    database = load_dbc(DEFAULT_DBC)
    sink = CanSink(CanConfig(f"virtual:{channel}"))
    sink.open()
    sink.close()
    assert _received(bus, database)[-1]["State"] == "stopping"
    sink.open()
    try:
        sink.on_frame(frame_result(0))
        time.sleep(0.25)
        sink.on_frame(frame_result(1))
        time.sleep(0.1)
    finally:
        sink.close()
    states = [f["State"] for f in _received(bus, database)]
    assert "ok" in states[:-1] and states[-1] == "stopping", states


@pytest.mark.parametrize(("hz", "ok"), [(10.0, True), (100.0, True), (0.0, False), (250.0, False)])
def test_status_rate_flag_is_checked(hz: float, ok: bool) -> None:
    from stopsign.edge.cli.detect_config import ConfigError, build_config

    flags = {"source": "test://", "can": "virtual:ch0", "can_status_hz": hz}
    if ok:
        assert build_config({}, flags).can_status_hz == hz
    else:
        with pytest.raises(ConfigError, match="can_status_hz"):
            build_config({}, flags)


def test_a_dbc_without_a_bus_is_an_error() -> None:
    from stopsign.edge.cli.detect_config import ConfigError, build_config

    with pytest.raises(ConfigError, match="can_dbc.*needs --can"):
        build_config({}, {"source": "test://", "can_dbc": str(DEFAULT_DBC)})


def test_status_rate_leaves_the_restart_gap_out() -> None:
    """Two sender sessions (edge-detect restarted, 5 s apart): the gap is no period."""
    database = load_dbc(DEFAULT_DBC)
    frames = []
    for session_start, count in ((1000.0, 21), (1007.0, 11)):
        encoder = FrameEncoder(database)
        for index in range(count):
            state = "stopping" if index == count - 1 else "ok"
            frame = encoder.encode(
                STATUS_MESSAGE, {"State": state, "Fps": 10, "LatencyP99": 5, "TrackedSigns": 0}
            )
            frames.append(
                loopback.ReceivedFrame(session_start + 0.1 * index, 0, frame.frame_id, frame.data.hex())
            )
    rate = loopback.status_rate(frames, database)
    assert rate["sessions"] == 2 and rate["frames"] == 30
    assert rate["rate_hz"] == pytest.approx(10.0) and rate["max_deviation_ms"] < 1e-6
