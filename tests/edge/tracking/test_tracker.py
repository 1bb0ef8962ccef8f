"""Tracker behaviour: confirmation, gaps, growth, hysteresis, resets, time-based coasting."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stopsign.edge.tracking import AHEAD, LOST, SpeedInput, Tracker, TrackerConfig, TrackerConfigError
from stopsign.edge.tracking.distance import CameraIntrinsics
from stopsign.edge.vision.detections import Detections

FPS = 30
FRAME_NS = 1_000_000_000 // FPS


def det(*boxes: tuple[float, float, float, float, float]) -> Detections:
    """Detections from (x1, y1, x2, y2, score) tuples; class 0."""
    if not boxes:
        return Detections.empty()
    arr = np.array(boxes, np.float32)
    return Detections(arr[:, :4], arr[:, 4], np.zeros(len(arr), np.int32))


def run(tracker: Tracker, frames: list[Detections], fps: float = FPS) -> list[tuple[int, str, int]]:
    """(frame, event, track id) of every event over the stream, then a flush."""
    out = []
    for index, detections in enumerate(frames):
        for event in tracker.update(detections, index, int(index * 1e9 / fps)):
            out.append((event.frame, event.event, event.track_id))
    out += [(e.frame, e.event, e.track_id) for e in tracker.flush()]
    return out


SIGN = (100, 100, 140, 140, 0.9)


@pytest.mark.parametrize(
    ("pattern", "expected_ahead_frames"),
    [
        ("X.........", []),  # one-frame false positive: no event
        ("XX........", []),  # two frames: still not 3 of 4
        ("XXX.......", [2]),  # event on the frame of the 3rd hit, not later
        ("XX.X......", [3]),  # 3 of the last 4
        ("X..X..X...", []),  # sparse flicker never reaches 3 of 4
        ("XXXX.XXXXX", [2]),  # a one-frame gap inside a track: no second event
        ("XXXXXXXXXX", [2]),
    ],
)
def test_confirmation_patterns(pattern: str, expected_ahead_frames: list[int]) -> None:
    frames = [det(SIGN) if c == "X" else det() for c in pattern]
    events = run(Tracker(TrackerConfig()), frames)
    assert [f for f, kind, _ in events if kind == AHEAD] == expected_ahead_frames
    assert len({tid for _, kind, tid in events if kind == AHEAD}) == len(expected_ahead_frames)


def test_growing_sign_stays_one_track() -> None:
    # 15 px to 300 px over 90 frames (3 s at 30 fps), drifting right and up as the car nears it.
    frames = []
    for i in range(90):
        size = 15 * (300 / 15) ** (i / 89)
        cx, cy = 320 + i * 2.0, 200 - i * 0.8
        frames.append(det((cx - size / 2, cy - size / 2, cx + size / 2, cy + size / 2, 0.8)))
    tracker = Tracker(TrackerConfig())
    events = run(tracker, frames)
    assert [kind for _, kind, _ in events] == [AHEAD, LOST]
    assert len({tid for _, _, tid in events}) == 1


def test_hysteresis_keeps_a_confirmed_track_through_a_score_dip() -> None:
    cfg = TrackerConfig(enter_threshold=0.6, stay_threshold=0.3, max_age_s=0.1)
    frames = [det(SIGN)] * 3 + [det((100, 100, 140, 140, 0.4))] * 10 + [det(SIGN)] * 3
    events = run(Tracker(cfg), frames)
    assert [kind for _, kind, _ in events] == [AHEAD, LOST]
    # Below the enter threshold a new sign never confirms.
    assert run(Tracker(cfg), [det((100, 100, 140, 140, 0.5))] * 10) == []


@pytest.mark.parametrize("fps", [10, 30, 60])
def test_coasting_is_time_based(fps: int) -> None:
    cfg = TrackerConfig(max_age_s=0.5)
    gap_short = int(0.4 * fps)  # coasts through
    gap_long = int(0.7 * fps)  # track ends, a new one starts
    frames = [det(SIGN)] * 4 + [det()] * gap_short + [det(SIGN)] * 4 + [det()] * gap_long + [det(SIGN)] * 4
    events = run(Tracker(cfg), frames, fps=fps)
    kinds = [kind for _, kind, _ in events]
    assert kinds == [AHEAD, LOST, AHEAD, LOST]
    assert events[1][0] < events[2][0]


def test_reset_ends_tracks_and_requires_fresh_confirmation() -> None:
    tracker = Tracker(TrackerConfig())
    for i in range(3):
        tracker.update(det(SIGN), i, i * FRAME_NS)
    lost = tracker.reset("source_restart", 3, 3 * FRAME_NS)
    assert [(e.event, e.reason) for e in lost] == [(LOST, "source_restart")]
    assert tracker.update(det(SIGN), 4, 4 * FRAME_NS) == []
    assert tracker.update(det(SIGN), 5, 5 * FRAME_NS) == []
    assert [e.event for e in tracker.update(det(SIGN), 6, 6 * FRAME_NS)] == [AHEAD]


def test_two_signs_get_two_tracks() -> None:
    other = (400, 100, 440, 140, 0.9)
    events = run(Tracker(TrackerConfig()), [det(SIGN, other)] * 5)
    assert sorted(tid for _, kind, tid in events if kind == AHEAD) == [1, 2]


def test_distance_and_time_to_sign() -> None:
    speed = SpeedInput()
    tracker = Tracker(TrackerConfig(focal_px=1000.0), speed=speed)
    box = (100, 100, 150, 150, 0.9)  # 50 px high: 1000 * 0.75 / 50 = 15 m
    speed.set(10.0, 0)
    events = [e for i in range(3) for e in tracker.update(det(box), i, i * FRAME_NS)]
    assert events[0].distance_m == pytest.approx(15.0, rel=0.05)
    assert events[0].time_to_sign_s == pytest.approx(1.5, rel=0.05)
    # Without intrinsics the distance is null, not a guess; a stale speed gives null time.
    no_focal = Tracker(TrackerConfig())
    events = [e for i in range(3) for e in no_focal.update(det(box), i, i * FRAME_NS)]
    assert events[0].distance_m is None and events[0].time_to_sign_s is None
    stale = SpeedInput()
    stale.set(10.0, 0)
    late = Tracker(TrackerConfig(focal_px=1000.0), speed=stale)
    start = 2_000_000_000  # 2 s after the speed reading
    events = [e for i in range(3) for e in late.update(det(box), i, start + i * FRAME_NS)]
    assert events[0].distance_m is not None and events[0].time_to_sign_s is None


def test_event_json_is_complete() -> None:
    tracker = Tracker(TrackerConfig())
    event = next(e for i in range(3) for e in tracker.update(det(SIGN), i, i * FRAME_NS))
    data = event.to_dict()
    assert data["event"] == AHEAD and data["frame"] == 2 and data["track_id"] == 1
    assert set(data) >= {"timestamp_ns", "box", "score", "distance_m", "time_to_sign_s", "reason"}
    assert event.to_json().startswith("{")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"enter_threshold": 1.5}, "enter_threshold"),
        ({"stay_threshold": 0.9, "enter_threshold": 0.5}, "must not exceed"),
        ({"confirm_hits": 5, "confirm_window": 4}, "confirm_hits"),
        ({"max_age_s": 0}, "max_age_s"),
        ({"focal_px": -1.0}, "focal_px"),
    ],
)
def test_config_errors_name_the_parameter(changes: dict, message: str) -> None:
    with pytest.raises(TrackerConfigError, match=message):
        TrackerConfig(**changes)


boxes = st.tuples(
    st.floats(0, 600), st.floats(0, 400), st.floats(5, 200), st.floats(5, 200), st.floats(0.0, 1.0)
).map(lambda t: (t[0], t[1], t[0] + t[2], t[1] + t[3], t[4]))
streams = st.lists(st.lists(boxes, max_size=4), min_size=1, max_size=40)


@settings(max_examples=150, deadline=None)
@given(stream=streams, fps=st.sampled_from([5, 15, 30, 60]), hits=st.integers(1, 4))
def test_random_streams_never_break_the_event_rules(stream: list, fps: int, hits: int) -> None:
    cfg = TrackerConfig(confirm_hits=hits, confirm_window=4)
    tracker = Tracker(cfg)
    ahead_ids: list[int] = []
    for index, frame in enumerate(stream):
        for event in tracker.update(det(*frame), index, int(index * 1e9 / fps)):
            if event.event == AHEAD:
                ahead_ids.append(event.track_id)
                assert event.hits >= hits  # never before M hits
    for event in tracker.flush():
        assert event.track_id in ahead_ids  # only confirmed tracks are ever reported lost
    assert len(ahead_ids) == len(set(ahead_ids))  # never two events per track


def test_reset_defaults_to_source_restart_at_the_last_frame_and_skips_unconfirmed() -> None:
    tracker = Tracker(TrackerConfig())
    for i in range(3):
        tracker.update(det(SIGN), i, i * FRAME_NS)
    tracker.update(det(SIGN, (400, 100, 440, 140, 0.9)), 3, 3 * FRAME_NS)  # a second, unconfirmed track
    lost = tracker.reset()
    assert [(e.event, e.reason, e.frame, e.timestamp_ns, e.track_id) for e in lost] == [
        (LOST, "source_restart", 3, 3 * FRAME_NS, 1)
    ]
    assert tracker.tracks == [] and tracker.flush() == []


def test_track_keeps_times_and_distance_from_intrinsics() -> None:
    intrinsics = CameraIntrinsics(fx=1000.0, fy=1200.0)
    tracker = Tracker(TrackerConfig(intrinsics=intrinsics))
    box = (100, 100, 160, 160, 0.9)  # 60 px high: 1200 * 0.75 / 60 = 15 m
    start = 5_000_000_000
    for i in range(4):
        tracker.update(det(box), 10 + i, start + i * FRAME_NS)
    (track,) = tracker.tracks
    assert (track.first_seen_frame, track.last_seen_frame) == (10, 13)
    assert (track.first_seen_ns, track.last_seen_ns) == (start, start + 3 * FRAME_NS)
    assert (track.hits, track.misses, track.confirmed) == (4, 0, True)
    assert track.distance_m == pytest.approx(15.0, rel=0.02)
    tracker.update(det(), 14, start + 4 * FRAME_NS)
    assert track.misses == 1 and track.distance_m == pytest.approx(15.0, rel=0.02)


@settings(max_examples=150, deadline=None)
@given(stream=streams, fps=st.sampled_from([5, 15, 30, 60]), hits=st.integers(1, 4), window=st.integers(4, 6))
def test_events_need_m_confident_frames_in_the_window(stream: list, fps: int, hits: int, window: int) -> None:
    """Checked against the input alone, not the tracker's own counters: a ``stop_sign_ahead`` on
    frame f needs a confident detection on f and on at least M of the frames f-N+1..f."""
    cfg = TrackerConfig(confirm_hits=hits, confirm_window=window)
    tracker = Tracker(cfg)
    confident = [any(score >= cfg.enter_threshold for *_, score in frame) for frame in stream]
    open_ids: set[int] = set()
    for index, frame in enumerate(stream):
        for event in tracker.update(det(*frame), index, int(index * 1e9 / fps)):
            if event.event == AHEAD:
                assert confident[index]
                assert sum(confident[max(0, index - window + 1) : index + 1]) >= hits
                open_ids.add(event.track_id)
            else:
                open_ids.remove(event.track_id)  # lost only after ahead, once
    assert {e.track_id for e in tracker.flush()} == open_ids  # every announced sign is closed


# --- source outages (a camera link that dropped and came back) -----------------------------------


@pytest.mark.parametrize(
    ("gap_s", "hold_gap_s", "expected"),
    [
        (0.0, 3.0, [(2, AHEAD, 1), (19, LOST, 1)]),  # no outage: one track to the end
        (1.0, 3.0, [(2, AHEAD, 1), (19, LOST, 1)]),  # held: no timeout, no second announcement
        (3.0, 3.0, [(2, AHEAD, 1), (19, LOST, 1)]),  # exactly the hold: still held
        (3.5, 3.0, [(2, AHEAD, 1), (10, LOST, 1), (12, AHEAD, 2), (19, LOST, 2)]),  # too long: ended
        (0.2, 0.0, [(2, AHEAD, 1), (10, LOST, 1), (12, AHEAD, 2), (19, LOST, 2)]),  # hold 0: every gap ends
    ],
)
def test_outage_is_held_up_to_hold_gap_s(gap_s: float, hold_gap_s: float, expected: list) -> None:
    tracker = Tracker(TrackerConfig(hold_gap_s=hold_gap_s))
    out, gap_ns = [], int(gap_s * 1e9)
    for index in range(20):
        timestamp = index * FRAME_NS + (gap_ns if index >= 10 else 0)
        if index == 10 and gap_ns:
            out += [
                (e.frame, e.event, e.track_id, e.reason) for e in tracker.bridge_gap(gap_ns, index, timestamp)
            ]
        out += [(e.frame, e.event, e.track_id, e.reason) for e in tracker.update(det(SIGN), index, timestamp)]
    out += [(e.frame, e.event, e.track_id, e.reason) for e in tracker.flush()]
    assert [row[:3] for row in out] == expected
    reasons = [row[3] for row in out if row[1] == LOST]
    assert reasons[-1] == "end_of_stream" and all(r == "source_gap" for r in reasons[:-1])


def test_held_track_does_not_time_out_on_the_outage_but_still_on_later_misses() -> None:
    tracker = Tracker(TrackerConfig(hold_gap_s=3.0, max_age_s=0.5))
    for index in range(5):
        tracker.update(det(SIGN), index, index * FRAME_NS)
    gap_ns = 2_000_000_000
    assert tracker.bridge_gap(gap_ns, 5, 5 * FRAME_NS + gap_ns) == []
    # After the outage the sign is gone: the track times out max_age_s after its last hit
    # (counted without the outage), not at once.
    events = []
    for index in range(5, 40):
        events += [(e.frame, e.event) for e in tracker.update(det(), index, index * FRAME_NS + gap_ns)]
    assert events == [(20, LOST)]  # last hit at frame 4; 0.5 s = 15 frames later, plus one


def test_hold_gap_s_is_validated() -> None:
    with pytest.raises(TrackerConfigError, match="hold_gap_s"):
        TrackerConfig(hold_gap_s=-1.0)
    with pytest.raises(TrackerConfigError, match="hold_gap_s"):
        TrackerConfig(hold_gap_s=float("nan"))
