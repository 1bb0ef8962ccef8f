"""Greedy IoU tracker with confirmation (M of N), hysteresis, time-based coasting and events.

Time comes only from the frames passed to :meth:`Tracker.update`, never from the wall clock, so
a replay on an injected clock gives the same events on every run.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from stopsign.edge.tracking.config import TrackerConfig
from stopsign.edge.tracking.distance import SpeedInput, distance_m, time_to_sign_s
from stopsign.edge.tracking.events import AHEAD, LOST, TrackEvent
from stopsign.edge.tracking.filter import AlphaBetaBox
from stopsign.edge.vision.detections import Detections
from stopsign.edge.vision.postprocess import box_iou


@dataclass
class Track:
    """One physical sign followed over frames (DESIGN.md: Track)."""

    track_id: int
    class_id: int
    filter: AlphaBetaBox
    score: float
    first_seen_frame: int
    first_seen_ns: int
    last_seen_frame: int
    last_seen_ns: int
    last_update_ns: int
    hits: int = 1
    misses: int = 0
    confirmed: bool = False
    recent: deque[bool] = field(default_factory=deque)
    distance_m: float | None = None
    anchor_box: np.ndarray | None = None  # the last confident detection: a second reference for matching

    @property
    def box(self) -> np.ndarray:
        return self.filter.box


class Tracker:
    """Turns per-frame detections into tracks and ``stop_sign_ahead`` / ``stop_sign_lost`` events."""

    def __init__(self, config: TrackerConfig | None = None, speed: SpeedInput | None = None) -> None:
        self.config = config or TrackerConfig()
        self.speed = speed or SpeedInput()
        self.tracks: list[Track] = []
        self._next_id = 1
        self._last_frame = -1
        self._last_ns = 0

    # --- public API ------------------------------------------------------------------------------

    def update(self, detections: Detections, frame_index: int, timestamp_ns: int) -> list[TrackEvent]:
        """Advance to this frame; returns the events it caused (usually none)."""
        cfg = self.config
        self._last_frame, self._last_ns = frame_index, timestamp_ns
        candidates = detections[detections.score >= cfg.stay_threshold] if len(detections) else detections
        matches, unmatched = self._associate(candidates, timestamp_ns)
        events: list[TrackEvent] = []
        for track in self.tracks:
            det = matches.get(track.track_id)
            dt = (timestamp_ns - track.last_update_ns) / 1e9
            hit = False
            if det is not None:
                score = float(candidates.score[det])
                # Hysteresis: until confirmed only confident detections count; afterwards the lower
                # stay threshold keeps the track alive through a dip in score.
                hit = score >= (cfg.stay_threshold if track.confirmed else cfg.enter_threshold)
                confident = score >= cfg.enter_threshold
                track.filter.update(candidates.xyxy[det], dt, trusted=confident)
                if confident:
                    track.anchor_box = candidates.xyxy[det].astype(np.float64)
                track.last_update_ns = timestamp_ns
                track.score = cfg.score_alpha * score + (1 - cfg.score_alpha) * track.score
            track.recent.append(hit)
            while len(track.recent) > cfg.confirm_window:
                track.recent.popleft()
            if hit:
                track.hits += 1
                track.misses = 0
                track.last_seen_frame, track.last_seen_ns = frame_index, timestamp_ns
                if not track.confirmed and sum(track.recent) >= cfg.confirm_hits:
                    track.confirmed = True
                    events.append(self._event(AHEAD, track, frame_index, timestamp_ns, None))
            else:
                track.misses += 1
            track.distance_m = self._distance(track.box)
        events += self._expire(frame_index, timestamp_ns)
        for index in unmatched:
            if candidates.score[index] >= cfg.enter_threshold:
                self._start(candidates, int(index), frame_index, timestamp_ns)
        if cfg.confirm_hits == 1:  # a track can be confirmed on its first frame
            for track in self.tracks:
                if not track.confirmed and track.first_seen_frame == frame_index:
                    track.confirmed = True
                    events.append(self._event(AHEAD, track, frame_index, timestamp_ns, None))
        return events

    def reset(
        self, reason: str = "source_restart", frame_index: int | None = None, timestamp_ns: int | None = None
    ) -> list[TrackEvent]:
        """End every track (e.g. the source restarted); new tracks need a fresh confirmation.

        Confirmed tracks end with ``stop_sign_lost`` carrying ``reason``; unconfirmed ones end
        silently (they never announced anything). Frame and time default to the last frame seen.
        """
        frame_index = self._last_frame if frame_index is None else frame_index
        timestamp_ns = self._last_ns if timestamp_ns is None else timestamp_ns
        events = [self._event(LOST, t, frame_index, timestamp_ns, reason) for t in self.tracks if t.confirmed]
        self.tracks.clear()
        return events

    def bridge_gap(self, gap_ns: int, frame_index: int, timestamp_ns: int) -> list[TrackEvent]:
        """The source was down for ``gap_ns`` before the frame ``frame_index`` at ``timestamp_ns``.

        Up to ``hold_gap_s`` the tracks are held: the outage is taken out of their clocks (age,
        filter time step), as if time had stopped while nothing could be seen. A longer outage
        ends every track with reason ``source_gap``. Call it before :meth:`update` of that frame.
        """
        if gap_ns > self.config.hold_gap_s * 1e9:
            return self.reset("source_gap", frame_index, timestamp_ns)
        for track in self.tracks:
            track.first_seen_ns += gap_ns
            track.last_seen_ns += gap_ns
            track.last_update_ns += gap_ns
        return []

    def flush(self) -> list[TrackEvent]:
        """End of stream: close the open tracks at the last frame's time."""
        return self.reset("end_of_stream", self._last_frame, self._last_ns)

    # --- internals ---------------------------------------------------------------------------------

    def _associate(self, detections: Detections, now_ns: int) -> tuple[dict[int, int], list[int]]:
        """Greedy matching on affinity with each track's predicted box and its last confident box.

        The second reference matters after an occlusion: partial detections may have dragged the
        prediction away while the sign is still where it was last seen clearly.
        """
        if not self.tracks or not len(detections):
            return {}, list(range(len(detections)))
        predicted = np.stack([t.filter.predict((now_ns - t.last_update_ns) / 1e9) for t in self.tracks])
        anchors = np.stack(
            [t.anchor_box if t.anchor_box is not None else p for t, p in zip(self.tracks, predicted)]
        )
        affinity = np.maximum(self._affinity(predicted, detections), self._affinity(anchors, detections))
        same_class = np.array([t.class_id for t in self.tracks])[:, None] == detections.class_id[None]
        affinity = np.where(same_class, affinity, 0.0)
        matches: dict[int, int] = {}
        used: set[int] = set()
        for position in np.argsort(-affinity, axis=None, kind="stable"):
            t, d = divmod(int(position), affinity.shape[1])
            if affinity[t, d] <= 0:
                break
            track_id = self.tracks[t].track_id
            if track_id in matches or d in used:
                continue
            matches[track_id] = d
            used.add(d)
        return matches, [d for d in range(len(detections)) if d not in used]

    def _affinity(self, reference: np.ndarray, detections: Detections) -> np.ndarray:
        """(tracks, detections): 1 + IoU past the IoU gate; just below 1 inside the growth-aware
        centre gate (IoU matches always rank first); 0 when neither gate passes."""
        cfg = self.config
        iou = box_iou(reference, detections.xyxy)
        ref_wh = np.maximum(reference[:, 2:] - reference[:, :2], 1e-3)
        det_wh = np.maximum(detections.xyxy[:, 2:] - detections.xyxy[:, :2], 1e-3)
        ref_c = (reference[:, :2] + reference[:, 2:]) / 2
        det_c = (detections.xyxy[:, :2] + detections.xyxy[:, 2:]) / 2
        offset = (np.abs(det_c[None] - ref_c[:, None]) / ref_wh[:, None]).max(axis=2)  # in box sizes
        scale = np.abs(np.log(det_wh[None] / ref_wh[:, None])).max(axis=2)
        near = (offset <= cfg.centre_gate) & (scale <= np.log(cfg.max_scale_change))
        return np.where(iou >= cfg.iou_gate, 1.0 + iou, np.where(near, 1.0 - offset / 10, 0.0))

    def _start(self, detections: Detections, index: int, frame_index: int, now_ns: int) -> None:
        cfg = self.config
        track = Track(
            track_id=self._next_id,
            class_id=int(detections.class_id[index]),
            filter=AlphaBetaBox(detections.xyxy[index], cfg.alpha, cfg.beta),
            score=float(detections.score[index]),
            first_seen_frame=frame_index,
            first_seen_ns=now_ns,
            last_seen_frame=frame_index,
            last_seen_ns=now_ns,
            last_update_ns=now_ns,
        )
        track.recent.append(True)
        track.anchor_box = detections.xyxy[index].astype(np.float64)
        track.distance_m = self._distance(track.box)
        self._next_id += 1
        self.tracks.append(track)

    def _expire(self, frame_index: int, now_ns: int) -> list[TrackEvent]:
        limit_ns = self.config.max_age_s * 1e9
        events, kept = [], []
        for track in self.tracks:
            if now_ns - track.last_seen_ns > limit_ns:
                if track.confirmed:
                    events.append(self._event(LOST, track, frame_index, now_ns, "timeout"))
            else:
                kept.append(track)
        self.tracks = kept
        return events

    def _distance(self, box: np.ndarray) -> float | None:
        """Metres to the sign from a (4,) xyxy box's height; None without a focal length."""
        cfg = self.config
        return distance_m(float(box[3] - box[1]), cfg.sign_size_m, cfg.effective_focal_px)

    def _event(
        self, kind: str, track: Track, frame_index: int, now_ns: int, reason: str | None
    ) -> TrackEvent:
        cfg = self.config
        box = track.box
        distance = self._distance(box)
        track.distance_m = distance
        speed = self.speed.current(now_ns, cfg.speed_max_age_s)
        return TrackEvent(
            event=kind,
            frame=frame_index,
            timestamp_ns=now_ns,
            track_id=track.track_id,
            box=tuple(float(v) for v in box),  # type: ignore[arg-type]
            score=track.score,
            hits=track.hits,
            distance_m=distance,
            time_to_sign_s=time_to_sign_s(distance, speed),
            reason=reason,
            first_seen_frame=track.first_seen_frame,
        )
